"""Secrets kept in files (the embedded services' passwords, the generated SECRET_KEY and admin
password): each file is readable by its owner only from the moment it exists."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def kept_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_hex(24)) -> str:
    """The secret kept in ``path``; ``make()`` written there first when there is none yet."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(handle, "w") as file:
        file.write(make())
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (also when it existed before)."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(handle, 0o600)
    with os.fdopen(handle, "w") as file:
        file.write(text)
