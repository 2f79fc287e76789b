"""Request shapes (validated here for their types; the services validate their meaning) and the
JSON of rollouts and webhooks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rollouts.as_json import iso_time, rollout_json, transition_json
from rollouts.gate_metrics import METRICS
from rollouts.models import Rollout, Webhook
from rollouts.plan import APPROVALS, DEFAULT_MAX_DURATION_S, ON_FAIL, SOURCES
from rollouts.selectors import RolloutWithStats
from rollouts.stats import arm_summary
from rollouts.webhooks import EVENT_NAMES


class PlanStepSerializer(serializers.Serializer[Any]):
    """A plan step as the OpenAPI schema describes it (`rollouts.plan.Step` checks it)."""

    percent = serializers.IntegerField(
        min_value=1, max_value=100, help_text="strictly increasing; the last is 100"
    )
    min_duration_s = serializers.IntegerField(min_value=0)
    min_samples = serializers.IntegerField(min_value=0, help_text="per arm")
    max_duration_s = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, help_text=f"default {DEFAULT_MAX_DURATION_S}"
    )
    approval = serializers.ChoiceField(choices=APPROVALS, required=False, allow_null=True)


class GateSerializer(serializers.Serializer[Any]):
    """A gate as the OpenAPI schema describes it (`rollouts.plan.Gate` checks it): a metric and
    exactly one rule."""

    metric = serializers.RegexField(
        rf"^({'|'.join(METRICS)}|score:\S{{1,100}})$",
        help_text=f"{', '.join(METRICS)}, score:<name> or score:*",
    )
    source = serializers.ChoiceField(choices=SOURCES, required=False, allow_null=True)
    max = serializers.FloatField(required=False, allow_null=True)
    min = serializers.FloatField(required=False, allow_null=True)
    max_increase_pct = serializers.FloatField(required=False, allow_null=True, help_text="percent")
    max_increase_abs = serializers.FloatField(required=False, allow_null=True)
    max_drop_abs = serializers.FloatField(required=False, allow_null=True)
    min_samples = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, help_text="default: the step's"
    )
    on_fail = serializers.ChoiceField(choices=ON_FAIL, required=False, allow_null=True)
    query = serializers.DictField(
        child=serializers.CharField(), required=False, allow_null=True, help_text="prometheus gates: PromQL"
    )
    url = serializers.CharField(required=False, allow_null=True, help_text="prometheus gates: the server")


@extend_schema_field(PlanStepSerializer(many=True))
class PlanField(serializers.ListField):  # type: ignore[type-arg]
    """The plan as sent: `rollouts.plan` checks it."""

    child = serializers.JSONField()


@extend_schema_field(GateSerializer(many=True))
class GatesField(serializers.ListField):  # type: ignore[type-arg]
    """The gates as sent: `rollouts.plan` checks them."""

    child = serializers.JSONField()


class TrafficField(serializers.JSONField):
    """The traffic check's settings as sent: `rollouts.plan.TrafficCheck` checks them."""


class RolloutCreateRequest(serializers.Serializer[Any]):
    candidate_version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    plan = PlanField(
        required=False, allow_null=True, min_length=1, help_text="default: 10, 25, 50, 100 percent"
    )
    gates = GatesField(required=False, allow_null=True, help_text="replace the default gates")
    traffic = TrafficField(
        required=False,
        allow_null=True,
        help_text='the built-in traffic check: {"on_fail": "pause" (default), "rollback" or "observe"}',
    )
    start = serializers.BooleanField(required=False, default=True)
    salt = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=200, trim_whitespace=False
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")


class ActionRequest(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")
    expected_state = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=20,
        help_text=(
            f"Act only if the rollout is still in this state ({', '.join(Rollout.State.values)}; "
            "else 409 stale_request)."
        ),
    )
    expected_step_index = serializers.IntegerField(
        min_value=0,
        required=False,
        allow_null=True,
        default=None,
        help_text="Act only if the rollout is still at this step (0 is the first; else 409 stale_request).",
    )


class WebhookCreateRequest(serializers.Serializer[Any]):
    url = serializers.CharField(max_length=2000)
    secret = serializers.CharField(min_length=8, max_length=256, trim_whitespace=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_NAMES),
        required=False,
        allow_null=True,
        help_text="the transitions to be told about; default: all",
    )


class RolloutOut(serializers.Serializer[Any]):
    """The rollout as the API shows it (documentation of the response)."""

    id = serializers.IntegerField()
    prompt = serializers.CharField()
    baseline_version = serializers.IntegerField()
    candidate_version = serializers.IntegerField()
    state = serializers.ChoiceField(choices=Rollout.State.values)
    step_index = serializers.IntegerField()
    percent = serializers.FloatField(
        help_text="the percent of callers served the candidate (0 in a shadow step)"
    )
    shadow_percent = serializers.IntegerField(
        allow_null=True, help_text="in a shadow step: the percent of units whose answers carry `shadow`"
    )
    plan = serializers.ListField(child=serializers.DictField())
    gates = serializers.ListField(child=serializers.DictField())
    traffic = serializers.DictField(help_text='the built-in traffic check: {"on_fail"}')
    salt = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()
    current_step = serializers.DictField(allow_null=True)
    step_started_at = serializers.DateTimeField(allow_null=True)
    last_evaluated_at = serializers.DateTimeField(allow_null=True)


class RolloutDetailOut(RolloutOut):
    arms = serializers.DictField(child=serializers.DictField())
    override_outcomes = serializers.DictField(
        help_text="outcomes reported with arm override (callers an override served): in no gate"
    )
    verdicts = serializers.ListField(child=serializers.DictField())
    conditions = serializers.ListField(
        child=serializers.DictField(),
        help_text="what the latest evaluation checked: time, samples (per arm, as the controller "
        "counts them), gates, approval; each with met",
    )
    history = serializers.ListField(child=serializers.DictField())


class WebhookOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


def rollout_detail_json(detail: RolloutWithStats) -> dict[str, Any]:
    body = rollout_json(detail.rollout)
    body["arms"] = {arm: arm_summary(stats) for arm, stats in detail.arms.items()}
    body["override_outcomes"] = arm_summary(detail.override_outcomes)
    body["verdicts"] = detail.rollout.last_verdicts
    body["conditions"] = detail.rollout.last_conditions
    body["history"] = [transition_json(t) for t in detail.history]
    return body


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret."""
    return {
        "id": webhook.pk,
        "url": webhook.url,
        "events": webhook.events,
        "created_at": iso_time(webhook.created_at),
    }
