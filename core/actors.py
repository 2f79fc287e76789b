"""Who is acting: a user (through a session or an API key) or the system itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str
    is_admin: bool = False
    via: str = ""  # "key:NAME", "session", "admin", "command" or "" for the system itself

    @classmethod
    def system(cls) -> Actor:
        return cls(user_id=None, name="system", is_admin=True)

    @classmethod
    def of_user(cls, user: Any, *, via: str) -> Actor:
        """A user acting on their own rights: an admin when they are a superuser."""
        return cls(user_id=user.pk, name=user.get_username(), is_admin=user.is_superuser, via=via)
