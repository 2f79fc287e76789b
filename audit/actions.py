"""Every action the audit log records, by name (``AuditEntry.action``): what `GET /api/v1/audit?action=`
and the admin's filter offer. A service names its action from here; ``audit_record`` refuses any
other."""

from __future__ import annotations

from django.db import models


class AuditAction(models.TextChoices):
    PROMPT_CREATE = "prompt.create", "prompt created"
    PROMPT_UPDATE = "prompt.update", "prompt changed"
    VERSION_CREATE = "version.create", "version published"
    LABEL_MOVE = "label.move", "label moved"
    LABEL_DELETE = "label.delete", "label deleted"
    LANGFUSE_MIRROR_STOP = "langfuse_mirror.stop", "Langfuse mirror stopped"
    LANGFUSE_MIRROR_RESUME = "langfuse_mirror.resume", "Langfuse mirror resumed"
    ROLLOUT_CREATE = "rollout.create", "rollout created"
    # A rollout's transitions: "rollout." and the transition's event (rollouts.services).
    ROLLOUT_STARTED = "rollout.started", "rollout started"
    ROLLOUT_ADVANCED = "rollout.advanced", "rollout advanced a step"
    ROLLOUT_PAUSED = "rollout.paused", "rollout paused"
    ROLLOUT_RESUMED = "rollout.resumed", "rollout resumed"
    ROLLOUT_SUCCEEDED = "rollout.succeeded", "rollout succeeded"
    ROLLOUT_ROLLED_BACK = "rollout.rolled_back", "rollout rolled back"
    ROLLOUT_ABORTED = "rollout.aborted", "rollout aborted"
    ROLLOUT_CHECK_REPORTED = "rollout.check_reported", "rollout check reported"
    OVERRIDE_CREATE = "override.create", "override added"
    OVERRIDE_DELETE = "override.delete", "override expired"
    WEBHOOK_CREATE = "webhook.create", "webhook added"
    WEBHOOK_DELETE = "webhook.delete", "webhook removed"
    APIKEY_CREATE = "apikey.create", "API key created"
    APIKEY_REVOKE = "apikey.revoke", "API key revoked"
    ADMIN_ENSURE = "user.admin_ensure", "admin user ensured"
    USER_DELETE = "user.delete", "user deleted"

    @classmethod
    def of_rollout_event(cls, event: str) -> AuditAction:
        """The action of a rollout transition (``RolloutTransition.event``)."""
        return cls(f"rollout.{event}")
