from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from registry.models import Prompt, PromptVersion


class Rollout(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        PAUSED = "paused"
        SUCCEEDED = "succeeded"
        ROLLED_BACK = "rolled_back"
        ABORTED = "aborted"

    ACTIVE_STATES = (State.PENDING, State.RUNNING, State.PAUSED)
    SPLITTING_STATES = (State.RUNNING, State.PAUSED)

    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="rollouts")
    baseline = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    candidate = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    plan = models.JSONField()
    gates = models.JSONField()
    traffic = models.JSONField(
        default=dict, blank=True, help_text='the traffic check: {"on_fail": "pause"|"rollback"|"observe"}'
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    step_index = models.PositiveIntegerField(default=0)
    percent = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    salt = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    step_started_at = models.DateTimeField(
        null=True, blank=True, help_text="start of the current step's clock and statistics window"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    last_verdicts = models.JSONField(default=list, blank=True)
    last_conditions = models.JSONField(
        default=list, blank=True, help_text="what the latest evaluation checked (StepConditions)"
    )
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    checks_timeout_s = models.PositiveIntegerField(
        default=86400, help_text="a rollout whose required checks have not all passed by then is aborted"
    )
    start_after_checks = models.BooleanField(
        default=False, help_text="start once every required check has passed (created with start: true)"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt"],
                condition=Q(state__in=["pending", "running", "paused"]),
                name="one_active_rollout_per_prompt",
            )
        ]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.prompt.name} rollout {self.pk} (v{self.baseline.version}→v{self.candidate.version})"


class RolloutCheck(models.Model):
    """A check a rollout waits for in ``pending`` (its ``required_checks``), as last reported."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PASS = "pass"
        FAIL = "fail"

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="checks")
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    detail = models.TextField(blank=True, default="")
    url = models.URLField(max_length=2000, blank=True, default="", help_text="shown, never fetched")
    reported_at = models.DateTimeField(null=True, blank=True)
    reported_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["rollout", "name"], name="one_check_per_name")]

    def __str__(self) -> str:
        return f"rollout {self.rollout_id} check {self.name}: {self.status}"


class RolloutTransition(models.Model):
    """History: every state change and every step advance of a rollout."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="transitions")
    at = models.DateTimeField()
    event = models.CharField(max_length=32, help_text="started, advanced, paused, resumed, …")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    step_index = models.PositiveIntegerField()
    percent = models.DecimalField(max_digits=5, decimal_places=2)
    actor_name = models.CharField(max_length=200)
    reason = models.TextField(blank=True, default="")
    verdicts = models.JSONField(default=list, blank=True)
    conditions = models.JSONField(
        default=list, blank=True, help_text="what the decision that made it checked (StepConditions)"
    )

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"rollout {self.rollout_id}: {self.from_state} → {self.to_state} at {self.percent}%"


class Webhook(models.Model):
    """A URL told about every rollout transition and registry event (or the events listed), signed
    with ``secret``."""

    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=256)
    events = ArrayField(models.CharField(max_length=32), default=list, blank=True, help_text="empty: all")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url


class Outbox(models.Model):
    """One message for one webhook, written in the transaction of the transition or event it
    announces and sent (retried with backoff) by the delivery task. ``body`` is the exact JSON that
    is signed. ``rollout``: the rollout of a transition (none for the registry's events)."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="outbox")
    rollout = models.ForeignKey(Rollout, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=32)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "outbox"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(delivered_at__isnull=True, gave_up_at__isnull=True),
                name="outbox_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.webhook_id}"


class WebhookDelivery(models.Model):
    """One attempt to deliver an outbox message."""

    outbox = models.ForeignKey(Outbox, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.FloatField()
    succeeded = models.BooleanField()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"delivery {self.attempt} of {self.outbox_id}: {self.status_code or self.error}"
