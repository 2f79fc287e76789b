"""The whole service's series (core.cluster_metrics): how counts are written to and read back
from the Redis hash, and /metrics when Redis does not answer."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cluster_metrics import SharedCounter, SharedHistogram
from core.redis_client import forget_clients
from tests.servers import free_port

HISTOGRAM = SharedHistogram("test_seconds", "test", (0.01, 0.1, 1.0))
COUNTER = SharedCounter("test_things", "test", ("kind",), known=(("a",), ("b",)))


def added_up(increments: list[tuple[str, float]]) -> dict[tuple[str, ...], float]:
    """What HINCRBYFLOAT leaves in the hash, as the collector reads it."""
    fields: dict[tuple[str, ...], float] = defaultdict(float)
    for field, amount in increments:
        fields[tuple(json.loads(field))] += amount
    return dict(fields)


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=50))
def test_a_shared_histogram_reads_back_cumulative_buckets_count_and_sum(observations):
    fields = added_up([i for seconds in observations for i in HISTOGRAM.observe(seconds)])

    samples = {(s.name, s.labels.get("le")): s.value for s in HISTOGRAM.family(fields).samples}

    for bound in HISTOGRAM.buckets:
        assert samples[("test_seconds_bucket", repr(bound))] == sum(1 for o in observations if o <= bound)
    assert (
        samples[("test_seconds_bucket", "+Inf")] == samples[("test_seconds_count", None)] == len(observations)
    )
    assert samples[("test_seconds_sum", None)] == pytest.approx(sum(observations))


@given(st.lists(st.sampled_from(["a", "b", "c", 'with "quotes", commas']), max_size=30))
def test_a_shared_counter_reads_back_each_label_value_and_its_known_ones_from_zero(kinds):
    fields = added_up([COUNTER.by(kind) for kind in kinds])

    values = {s.labels["kind"]: s.value for s in COUNTER.family(fields).samples}

    assert values == {kind: float(kinds.count(kind)) for kind in {"a", "b", *kinds}}


@pytest.mark.django_db
def test_metrics_answer_without_redis_leaving_out_only_what_redis_holds(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    forget_clients()
    try:
        response = client.get("/metrics")
    finally:
        forget_clients()

    assert response.status_code == 200
    text = response.content.decode()
    assert "\npromptramp_stale_serves_total " in text  # the process's own
    assert 'promptramp_rollouts{state="running"} 0.0' in text  # read from PostgreSQL
    assert "promptramp_rollout_transitions_total" not in text  # kept in Redis
    assert "promptramp_ingest_pending_aggregates" not in text  # read from Redis
