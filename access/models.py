from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

SCOPES = ("read", "ingest", "write", "checks", "admin")


class ApiKey(models.Model):
    """A bearer key for the REST API. Only the SHA-256 of the key is stored; the key itself is
    shown once, when it is created."""

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, db_index=True, help_text="the key's first characters")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=16), default=list)
    prompts = ArrayField(
        models.CharField(max_length=130),
        null=True,
        blank=True,
        help_text="the prompts it may touch: names and prefixes ending in '*'; empty: every prompt",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
