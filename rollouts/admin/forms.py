"""The rollout pages' forms. They parse what a person typed (JSON, yes/no); the rules of plans,
gates and rollouts are checked by rollouts.services, whose errors the views show on the form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms

from core.admin import ReasonForm, parse_json
from registry.admin.forms import VersionChoicesForm
from rollouts.plan import (
    DEFAULT_APPROVAL,
    DEFAULT_GATES,
    DEFAULT_MAX_DURATION_S,
    DEFAULT_ON_FAIL,
    DEFAULT_PLAN,
    DEFAULT_TRAFFIC_ON_FAIL,
    TRAFFIC_ON_FAIL,
)

MAX_REASON = 10_000
# Fields a step or gate has when left out: the pre-filled plan and gates do without them.
FIELD_DEFAULTS = {
    ("max_duration_s", DEFAULT_MAX_DURATION_S),
    ("approval", DEFAULT_APPROVAL),
    ("on_fail", DEFAULT_ON_FAIL),
}
CODE = {"class": "vLargeTextField pr-code pr-json", "spellcheck": "false"}


def json_rows(items: Sequence[dict[str, Any]]) -> str:
    """A JSON list with one item per line: plans and gates read (and edit) best that way."""
    tidy = [{key: _tidy(value) for key, value in item.items()} for item in items]
    return "[\n" + ",\n".join(f"  {json.dumps(item, ensure_ascii=False)}" for item in tidy) + "\n]"


def _tidy(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _without_defaults(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if (key, value) not in FIELD_DEFAULTS}


class PromptChoiceForm(forms.Form):
    """Which prompt to roll out (a GET form: it changes nothing)."""

    prompt = forms.CharField(
        max_length=128,
        widget=forms.TextInput(attrs={"list": "prompt-names", "autocomplete": "off", "size": 40}),
        help_text="Its name, e.g. <code>support.answer</code>.",
    )


class RolloutStartForm(VersionChoicesForm):
    version_fields = ("candidate_version",)

    candidate_version = forms.TypedChoiceField(
        coerce=int, help_text="The version to ramp up. Production is the baseline it is compared with."
    )
    plan = forms.CharField(
        widget=forms.Textarea(attrs={**CODE, "rows": 7, "wrap": "off"}),
        help_text="Steps in order, percents rising to 100. Each: <code>percent</code> of users on the "
        "candidate, <code>min_duration_s</code>, <code>min_samples</code> per arm, "
        f"<code>max_duration_s</code> (default {DEFAULT_MAX_DURATION_S}: the step pauses when its gates "
        "have not all passed by then) and <code>approval</code> <code>auto</code> (default) or "
        '<code>manual</code> (waits for Promote). Steps with <code>"shadow": true</code> may come '
        "first: everyone gets the baseline, and the candidate runs unseen for their percent of units.",
    )
    gates = forms.CharField(
        widget=forms.Textarea(attrs={**CODE, "rows": 7, "wrap": "off"}),
        help_text="Each: <code>metric</code> (<code>latency_p50_ms</code>, <code>latency_p95_ms</code>, "
        "<code>latency_p99_ms</code>, <code>error_rate</code>, <code>cost_per_request</code>, "
        "<code>score:NAME</code>, <code>score:*</code>), <code>source</code> (<code>ingest</code>, "
        "<code>langfuse</code>, <code>prometheus</code>), one rule (<code>max</code>, <code>min</code>, "
        "<code>max_increase_pct</code>, <code>max_increase_abs</code>, <code>max_drop_abs</code>), "
        "<code>min_samples</code> (default: the step's) and <code>on_fail</code> (<code>rollback</code>, "
        "the default, <code>pause</code>, or <code>observe</code>: record the verdict only). "
        "Error rates and scores are fractions. "
        "<code>[]</code>: no gates.",
    )
    traffic_on_fail = forms.ChoiceField(
        label="Traffic check",
        required=False,
        choices=[(choice, choice) for choice in TRAFFIC_ON_FAIL],
        initial=DEFAULT_TRAFFIC_ON_FAIL,
        help_text="What the built-in traffic check does when the candidate's share of the traffic is "
        "off the step's percent, or it reports 20% fewer outcomes per exposure than the baseline: "
        "<code>pause</code> (default), <code>rollback</code>, or <code>observe</code> "
        "(show the verdict only).",
    )
    start = forms.TypedChoiceField(
        label="Start now",
        choices=[("yes", "Yes"), ("no", "No")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
        initial="yes",
        help_text="Yes: the first step's share of users gets the candidate at once. "
        "No: the rollout waits, pending, until you start it from its page.",
    )
    reason = forms.CharField(
        required=False,
        max_length=MAX_REASON,
        widget=forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
        help_text="Why: it is kept in the audit log.",
    )

    @staticmethod
    def defaults() -> dict[str, str]:
        """The default plan and gates, without the fields that are at their own defaults."""
        return {
            "plan": json_rows([_without_defaults(step) for step in DEFAULT_PLAN.to_json()]),
            "gates": json_rows([_without_defaults(gate.to_json()) for gate in DEFAULT_GATES]),
            "start": "yes",
        }

    def clean_plan(self) -> Any:
        return parse_json(self.cleaned_data["plan"], "The plan")

    def clean_gates(self) -> Any:
        return parse_json(self.cleaned_data["gates"], "The gates")


class ActionForm(ReasonForm):
    """The reason given with an action on a rollout (optional, like the API's), and the state and
    step the page showed (hidden fields), so that a click sent twice acts once."""

    reason = forms.CharField(required=False, max_length=MAX_REASON)
    expected_state = forms.CharField(required=False, max_length=20)
    expected_step_index = forms.IntegerField(required=False, min_value=0)
