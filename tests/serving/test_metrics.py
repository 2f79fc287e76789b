import urllib.request

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, http_get, web_server
from tests.serving.helpers import put_rollout


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
        # Whichever worker answers, it counts what both answered.
        answers = [urllib.request.urlopen(url + "/metrics", timeout=5).read().decode() for _ in range(10)]

    labels = {"prompt": "support.answer", "arm": "candidate"}
    assert {_sample(text, "promptramp_resolves_total", **labels) for text in answers} == {40}


def test_prompt_label_values_are_capped_and_fold_into_other(monkeypatch):
    monkeypatch.setattr(metrics, "_prompt_labels", set())
    monkeypatch.setattr(metrics, "_resolve_counters", {})
    monkeypatch.setattr(metrics, "MAX_PROMPT_LABELS", 3)
    other_before = metrics.resolves_total.labels("other", "production")._value.get()

    for index in range(5):
        metrics.count_resolve(f"capped.p{index}", "production")

    assert metrics._prompt_labels == {"capped.p0", "capped.p1", "capped.p2"}
    assert metrics.resolves_total.labels("other", "production")._value.get() - other_before == 2
