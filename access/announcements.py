"""Changes to users and API keys reach every process's key cache, whichever path made them.

The services (``access.services``) announce their own changes. A user deactivated, made or
unmade superuser, renamed or deleted in the Django admin or a shell, or a key saved or deleted
there, goes through the model's save/delete; these receivers announce that too, so the key
stops (or changes) everywhere within a second. This is cache invalidation, not business logic:
it decides nothing. (A bulk ``QuerySet.update()`` sends no signal: use the services or save().)
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from access.models import ApiKey
from core.state_cache import API_KEYS_STATE, state_changed

# Fields of a user that a key's answer depends on (KeyInfo and the filter on is_active).
USER_FIELDS_OF_KEYS = frozenset({"is_active", "is_superuser", "username"})
KEY_FIELDS_NOT_SERVED = frozenset({"last_used_at"})


def _user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    if created:
        return  # a new user has no keys yet
    if update_fields is not None and not USER_FIELDS_OF_KEYS & set(update_fields):
        return  # e.g. last_login at every sign-in
    state_changed(API_KEYS_STATE)


def _key_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= KEY_FIELDS_NOT_SERVED:
        return
    state_changed(API_KEYS_STATE)


def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    state_changed(API_KEYS_STATE)


def connect() -> None:
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="access.user_saved")
    post_delete.connect(_deleted, sender=user_model, dispatch_uid="access.user_deleted")
    post_save.connect(_key_saved, sender=ApiKey, dispatch_uid="access.key_saved")
    post_delete.connect(_deleted, sender=ApiKey, dispatch_uid="access.key_deleted")
