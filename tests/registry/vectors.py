"""The shared bucketing vectors (shared/bucketing_vectors.json), which the server and the SDK
must both reproduce. shared/ is the folder beside the repository, or PROMPTRAMP_SHARED_DIR."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings


def shared_dir() -> Path:
    return Path(os.environ.get("PROMPTRAMP_SHARED_DIR") or Path(settings.BASE_DIR).parent / "shared")


def bucketing_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(
        (shared_dir() / "bucketing_vectors.json").read_text(encoding="utf-8")
    )["vectors"]
    assert len(vectors) >= 300
    return vectors
