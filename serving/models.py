from django.conf import settings
from django.db import models
from django.db.models import Q

from registry.models import Prompt, PromptVersion


class Override(models.Model):
    """Who gets what regardless of any rollout: a unit (``unit``) or every caller with an
    attribute value (``attribute`` = ``value``) is served a version (``version``) or an arm of
    whichever rollout is active (``arm``), until ``expires_at`` when set. Exactly one match and
    one target are set ("" and null mean "not this one"); the database holds that."""

    class Arm(models.TextChoices):
        CANDIDATE = "candidate"
        BASELINE = "baseline"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="overrides")
    unit = models.CharField(max_length=512, blank=True, default="")
    attribute = models.CharField(max_length=64, blank=True, default="")
    value = models.CharField(max_length=200, blank=True, default="")
    version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    arm = models.CharField(max_length=16, choices=Arm.choices, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(unit__gt="") & Q(attribute="") & Q(value=""))
                | (Q(unit="") & Q(attribute__gt="") & Q(value__gt="")),
                name="override_one_match",
            ),
            models.CheckConstraint(
                condition=(Q(version__isnull=False) & Q(arm="")) | (Q(version__isnull=True) & ~Q(arm="")),
                name="override_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prompt.name} override {self.pk}"

    @property
    def match(self) -> dict[str, str]:
        if self.unit:
            return {"unit": self.unit}
        return {"attribute": self.attribute, "value": self.value}
