import urllib.request

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, http_get, wait_for, web_server
from tests.serving.helpers import put_rollout

CANDIDATE = {"prompt": "support.answer", "arm": "candidate"}


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


@pytest.mark.django_db
def test_metrics_count_resolves_by_prompt_and_arm_without_unit_ids(alice, client, client_with_key):
    put_rollout(make_prompt(alice, versions=2), percent="100")
    reader = client_with_key(alice, "read")
    before = client.get("/metrics").content.decode()

    for unit in ("user-1", "user-2", "user-3"):
        assert reader.get(f"/api/v1/prompts/support.answer/resolve?unit={unit}").status_code == 200
    after = client.get("/metrics")

    assert after.status_code == 200 and after["Content-Type"].startswith("text/plain")
    text = after.content.decode()
    name = "promptramp_resolves_total"
    labels = {"prompt": "support.answer", "arm": "candidate"}
    assert _sample(text, name, **labels) - _sample(before, name, **labels) == 3
    assert "user-1" not in text
    assert _sample(text, "promptramp_serving_request_seconds_count", endpoint="resolve") >= 3
    assert _sample(text, "promptramp_state_cache_rebuilds_total", state="serving", outcome="ok") >= 1
    assert _sample(text, "promptramp_state_cache_hits_total", state="serving") >= 3
    assert "promptramp_stale_serves_total" in text


@pytest.mark.django_db(transaction=True)
def test_metrics_of_the_web_server_add_up_every_worker(alice, tmp_path):
    put_rollout(make_prompt(alice, versions=2), percent="100")
    key = make_key(alice, "read")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), PROMETHEUS_MULTIPROC_DIR=str(folder))

    with web_server(env, tmp_path / "web.log") as url:  # two worker processes
        for unit in range(40):  # a connection each: the workers share them
            reply = http_get(f"{url}/api/v1/prompts/support.answer/resolve?unit=user-{unit}", key=key)
            assert reply.status == 200
        # Each worker adds its counts to the shared series within FLUSH_SECONDS; then whichever
        # worker answers, it counts what both answered.
        wait_for(lambda: _sample(scrape(url), "promptramp_resolves_total", **CANDIDATE) == 40, seconds=5)
        answers = [scrape(url) for _ in range(10)]

    assert {_sample(text, "promptramp_resolves_total", **CANDIDATE) for text in answers} == {40}
    latency = {"endpoint": "resolve"}
    assert {_sample(text, "promptramp_serving_request_seconds_count", **latency) for text in answers} == {40}
    assert {
        _sample(text, "promptramp_serving_request_seconds_bucket", le="+Inf", **latency) for text in answers
    } == {40}
    assert all(
        0 < _sample(text, "promptramp_serving_request_seconds_sum", **latency) < 40 for text in answers
    )


def scrape(url: str) -> str:
    return urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()


def test_prompt_label_values_are_capped_and_fold_into_other(monkeypatch):
    monkeypatch.setattr(metrics, "_prompt_labels", set())
    monkeypatch.setattr(metrics, "_resolve_counters", {})
    monkeypatch.setattr(metrics, "MAX_PROMPT_LABELS", 3)
    other_before = metrics.resolves_total.labels("other", "production")._value.get()

    for index in range(5):
        metrics.count_served("resolve", 0.001, f"capped.p{index}", "production")
    metrics.request_metrics.flush()

    assert metrics._prompt_labels == {"capped.p0", "capped.p1", "capped.p2"}
    assert metrics.resolves_total.labels("other", "production")._value.get() - other_before == 2


seconds = st.one_of(
    st.sampled_from(metrics.SERVING_BUCKETS),  # on a bound: counted in its bucket, not the next
    st.floats(min_value=0, max_value=5, allow_nan=False),
)


@given(st.lists(seconds, max_size=50))
def test_requests_counted_in_memory_give_the_series_observe_would(observed):
    reference = Histogram("reference_seconds", "", buckets=metrics.SERVING_BUCKETS, registry=None)
    endpoint = "hypothesis"
    series = metrics.request_seconds.labels(endpoint)
    before = _histogram_samples(series)

    for value in observed:
        metrics.observe_seconds(endpoint, value)
        reference.observe(value)
    metrics.request_metrics.flush()

    after, expected = _histogram_samples(series), _histogram_samples(reference)
    assert [a - b for a, b in zip(after, before, strict=True)] == pytest.approx(expected)


def _histogram_samples(histogram: Histogram) -> list[float]:
    """Its buckets, count and sum (not the time it was created)."""
    return [sample.value for sample in histogram.collect()[0].samples if not sample.name.endswith("_created")]
