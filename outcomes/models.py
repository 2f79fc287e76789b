from django.db import models

from registry.models import Prompt, PromptVersion
from rollouts.models import Rollout


class OutcomeMinute(models.Model):
    """The outcomes of one minute of one arm: mergeable aggregates, never single events.

        One row per (rollout, arm, version, minute); outcomes reported without a rollout have
        ``rollout`` null and arm ``production``; those of callers an override served have arm
    ``override`` and the rollout active then, if any. Rows are only ever added to (see outcomes.services):
        counts and sums add, the latency histogram adds per bucket (``{"<bucket index>": count}``,
        rollouts.stats), ``scores`` adds per name (``{name: {"count", "sum", "sumsq"}}``) and
        ``error_types`` per type (``{type: count}``).
    """

    class Arm(models.TextChoices):
        BASELINE = "baseline"
        CANDIDATE = "candidate"
        PRODUCTION = "production"
        SHADOW = "shadow"
        SHADOW_BASELINE = "shadow_baseline", "baseline (shadow sample)"
        OVERRIDE = "override"  # kept apart: never in a gate's statistics

    minute = models.DateTimeField(help_text="start of the minute (UTC)")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    rollout = models.ForeignKey(Rollout, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    arm = models.CharField(max_length=16, choices=Arm.choices)
    samples = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    latency_count = models.BigIntegerField(default=0)
    latency_sum = models.FloatField(default=0)
    latency_sumsq = models.FloatField(default=0)
    latency_histogram = models.JSONField(default=dict)
    cost_count = models.BigIntegerField(default=0)
    cost_sum = models.FloatField(default=0)
    cost_sumsq = models.FloatField(default=0)
    input_tokens_count = models.BigIntegerField(default=0)
    input_tokens_sum = models.BigIntegerField(default=0)
    output_tokens_count = models.BigIntegerField(default=0)
    output_tokens_sum = models.BigIntegerField(default=0)
    scores = models.JSONField(default=dict)
    error_types = models.JSONField(default=dict)

    class Meta:
        ordering = ["minute", "arm"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "arm", "version", "minute"],
                name="outcome_minute_unique",
                nulls_distinct=False,
            )
        ]
        indexes = [
            models.Index(fields=["rollout", "minute"], name="outcome_minute_rollout"),
            models.Index(fields=["version", "minute"], name="outcome_minute_version"),
        ]

    def __str__(self) -> str:
        return f"{self.arm} v{self.version_id} at {self.minute:%Y-%m-%d %H:%M}"


class FlushedBatch(models.Model):
    """A batch of aggregates moved from Redis into OutcomeMinute rows: recorded in the same
    transaction as the rows, so a batch is applied exactly once however often it is retried."""

    batch_id = models.CharField(max_length=64, primary_key=True)
    flushed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    keys = models.PositiveIntegerField(help_text="aggregates in the batch")

    class Meta:
        verbose_name_plural = "flushed batches"

    def __str__(self) -> str:
        return self.batch_id
