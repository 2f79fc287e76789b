"""The shapes of POST /api/v1/events, for the OpenAPI schema only: the view reads the body with
orjson and outcomes.validation, which is much faster than a serializer per event."""

from rest_framework import serializers


class OutcomeEventSerializer(serializers.Serializer):
    """A call's outcome (``prompt`` and ``version`` required), or a late score: only
    ``event_id``, ``of_event`` and ``scores``."""

    event_id = serializers.UUIDField(help_text="unique per event; a repeated id is counted once")
    of_event = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="a late score: the event_id of the call whose arm and minute its scores count for; "
        "it then carries only event_id, of_event and scores",
    )
    prompt = serializers.RegexField(
        r"^[a-z0-9][a-z0-9._-]{0,127}$", required=False, help_text="required, except in a late score"
    )
    version = serializers.IntegerField(
        min_value=1, required=False, help_text="required, except in a late score"
    )
    rollout_id = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    arm = serializers.ChoiceField(
        ["baseline", "candidate", "shadow", "production", "override"],
        required=False,
        allow_null=True,
        help_text="baseline, candidate, shadow (a shadow step's run: the candidate's version) or "
        "override (the override's version) with a rollout_id; production, override or null without one",
    )
    shadow_sample = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="arm baseline only: the answer carried a shadow (the unit is in a shadow step's "
        "sample); counted as the baseline the shadow runs are compared with",
    )
    latency_ms = serializers.FloatField(min_value=0, max_value=86_400_000, required=False, allow_null=True)
    error = serializers.BooleanField(required=False, allow_null=True, default=False)
    error_type = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$", required=False, allow_null=True)
    cost_usd = serializers.FloatField(min_value=0, max_value=1_000_000, required=False, allow_null=True)
    input_tokens = serializers.IntegerField(
        min_value=0, max_value=1_000_000_000, required=False, allow_null=True
    )
    output_tokens = serializers.IntegerField(
        min_value=0, max_value=1_000_000_000, required=False, allow_null=True
    )
    scores = serializers.DictField(
        child=serializers.FloatField(min_value=-1e9, max_value=1e9),
        required=False,
        allow_null=True,
        help_text="up to 20 {name: number}, names matching ^[a-z][a-z0-9_.-]{0,63}$ (1+ in a late score)",
    )
    ts = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO-8601; counted in its minute, clamped to arrival ± 5 min",
    )


class ExposureSerializer(serializers.Serializer):
    rollout_id = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    arm = serializers.ChoiceField(["baseline", "candidate", "shadow", "override"])
    minute = serializers.IntegerField(help_text="Unix minute (seconds // 60), clamped to arrival ± 5 min")
    count = serializers.IntegerField(min_value=1, max_value=1_000_000_000)


class EventBatchSerializer(serializers.Serializer):
    events = OutcomeEventSerializer(many=True, max_length=1000)
    batch_id = serializers.UUIDField(
        required=False, help_text="required with exposures: a batch sent again is counted once"
    )
    exposures = ExposureSerializer(
        many=True,
        max_length=1000,
        required=False,
        help_text="an SDK's counts of its local resolutions per rollout, arm and minute",
    )


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="events counted now")
    duplicates = serializers.IntegerField(help_text="events whose event_id was already received")
    unmatched = serializers.IntegerField(help_text="late scores whose call is unknown (not stored)")
    exposures = serializers.IntegerField(
        required=False, help_text="with exposures: the rows counted (0 when the batch_id was seen before)"
    )
