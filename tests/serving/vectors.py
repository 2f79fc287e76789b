"""The bucketing vectors (tests/data/bucketing_vectors.json), computed with an independent murmur3
implementation, which the server and the SDK must both reproduce bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_FILE = Path(__file__).resolve().parents[1] / "data" / "bucketing_vectors.json"


def bucketing_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
    assert len(vectors) >= 300
    return vectors


OVERRIDE_VECTORS_FILE = VECTORS_FILE.with_name("override_vectors.json")


def override_vectors() -> list[dict[str, Any]]:
    """Who gets what when overrides apply (tests/data/override_vectors.json): the server and the
    SDK must both give every expected answer."""
    cases: list[dict[str, Any]] = json.loads(OVERRIDE_VECTORS_FILE.read_text(encoding="utf-8"))["cases"]
    return cases
