from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

PROMPT_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,127}$"
LABEL_NAME_RE = r"^[a-z][a-z0-9_-]{0,63}$"
PRODUCTION = "production"
LATEST = "latest"


class Prompt(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text"
        CHAT = "chat"

    name = models.CharField(max_length=128, unique=True, validators=[RegexValidator(PROMPT_NAME_RE)])
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEXT)
    description = models.TextField(blank=True, default="")
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    owner_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="owned_prompts")
    owner_groups = models.ManyToManyField(Group, blank=True, related_name="owned_prompts")
    latest_version = models.PositiveIntegerField(default=0, help_text="highest version number")
    require_second_approver = models.BooleanField(
        default=False,
        help_text="starting a rollout, promoting past a manual step and moving production need a user "
        "other than the author of the version served (registry.approvals)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PromptVersion(models.Model):
    """An immutable version of a prompt: PostgreSQL refuses UPDATE and DELETE (see migration)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    # null (not "") means "absent" here: text prompts have a template, chat prompts messages.
    template = models.TextField(null=True, blank=True)  # noqa: DJ001
    messages = models.JSONField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, default="")
    config = models.JSONField(default=dict, blank=True)
    variables = models.JSONField(default=list, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    git_commit = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    git_tag = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "version"], name="version_unique_per_prompt")
        ]

    def __str__(self) -> str:
        return f"{self.prompt.name} v{self.version}"


class Label(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=64, validators=[RegexValidator(LABEL_NAME_RE)])
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prompt", "name"]
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="label_unique_per_prompt")]

    def __str__(self) -> str:
        return f"{self.prompt.name}@{self.name}"


class LangfuseMirror(models.Model):
    """The Langfuse mirror of one prompt (``registry.langfuse_mirror``): its outbox row, marked due
    in the transaction of each change to mirror, and what became of the last attempt. Once
    ``stopped_reason`` is set the prompt is no longer mirrored (Langfuse's numbering diverged)."""

    prompt = models.OneToOneField(
        Prompt, primary_key=True, on_delete=models.CASCADE, related_name="langfuse_mirror"
    )
    changes = models.PositiveIntegerField(default=0, help_text="changes marked so far")
    due_at = models.DateTimeField(null=True, blank=True, help_text="when to mirror next; empty: in sync")
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="failed attempts since the last success")
    last_error = models.TextField(blank=True, default="")
    mirrored_at = models.DateTimeField(null=True, blank=True)
    stopped_reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["due_at"], condition=Q(due_at__isnull=False), name="langfuse_mirror_due")
        ]

    def __str__(self) -> str:
        return f"Langfuse mirror of {self.prompt_id}"
