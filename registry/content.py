"""A version's content, in canonical form, and its hash (pure; no Django).

Content = canonical JSON (sorted keys, UTF-8, no insignificant white space) of
``{kind, template|messages, model, config}``; ``content_hash`` is its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_content(
    *,
    kind: str,
    template: str | None,
    messages: list[dict[str, Any]] | None,
    model: str,
    config: dict[str, Any],
) -> bytes:
    body: dict[str, Any] = {"kind": kind, "model": model, "config": config}
    if kind == "chat":
        body["messages"] = messages
    else:
        body["template"] = template
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def content_hash(**content: Any) -> str:
    return hashlib.sha256(canonical_content(**content)).hexdigest()
