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
