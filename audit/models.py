from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """One thing that happened, who did it and why. Append-only: PostgreSQL refuses UPDATE and
    DELETE on this table (see the migration), whatever code tries."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=200, db_index=True, help_text="user name or 'system'")
    via = models.CharField(max_length=120, blank=True, default="", help_text="e.g. key:NAME, session")
    action = models.CharField(max_length=64, db_index=True)
    prompt_name = models.CharField(max_length=128, blank=True, default="", db_index=True)
    object_type = models.CharField(max_length=64, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.prompt_name}"
