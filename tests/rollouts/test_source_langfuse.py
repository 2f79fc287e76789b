"""The langfuse source against a fake Langfuse speaking the public API the SDK calls."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from pytest_django.fixtures import Settings

from rollouts.engine import INSUFFICIENT, SourceWindow, decide
from rollouts.plan import Gate, Plan
from rollouts.sources import RolloutArms, SourceUnavailable, read_windows
from rollouts.sources.langfuse import LangfuseSource
from rollouts.stats import RELATIVE_ACCURACY
from tests.fakes.langfuse_server import FakeLangfuse, serve

ROLLOUT = RolloutArms(rollout_id=7, prompt="support.answer", baseline_version=1, candidate_version=2)
UNTIL = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(minutes=10)
ERROR_GATE = Gate.from_json({"metric": "error_rate", "source": "langfuse", "max_increase_abs": 0.01})


def gate(metric: str) -> Gate:
    return Gate.from_json({"metric": metric, "source": "langfuse", "max_drop_abs": 0.05})


def minute(n: float) -> datetime:
    return SINCE + timedelta(minutes=n)


def read(*gates: Gate, source: LangfuseSource | None = None) -> SourceWindow:
    return (source or LangfuseSource()).read(
        rollout=ROLLOUT,
        gates=gates or (ERROR_GATE,),
        since=SINCE,
        until=UNTIL,
        deadline=time.monotonic() + 10,
    )


def add_arm(langfuse: FakeLangfuse, version: int, latencies: list[float], **extra: object) -> None:
    for i, latency in enumerate(latencies):
        langfuse.add_generation(
            id=f"v{version}-g{i}",
            trace_id=f"v{version}-t{i}",
            prompt="support.answer",
            version=version,
            start=minute(1 + i * 0.5),
            latency_s=latency,
            **extra,  # type: ignore[arg-type]
        )


def test_each_arm_gets_the_generations_of_its_prompt_version_in_the_window(langfuse: FakeLangfuse) -> None:
    # Given generations of both versions, and others that must not count
    add_arm(langfuse, 1, [0.8, 0.9, 1.0, 1.1, 1.2], total_cost=0.002)
    add_arm(langfuse, 2, [1.5, 1.5, 1.5], total_cost=0.004)
    langfuse.add_generation(id="other-prompt", trace_id="x1", prompt="billing", version=2, start=minute(2))
    langfuse.add_generation(
        id="other-version", trace_id="x2", prompt="support.answer", version=3, start=minute(2)
    )
    langfuse.add_generation(id="before", trace_id="x3", prompt="support.answer", version=2, start=minute(-1))
    langfuse.add_generation(id="at-end", trace_id="x4", prompt="support.answer", version=2, start=UNTIL)
    langfuse.add_generation(id="no-prompt", trace_id="x5", prompt=None, version=None, start=minute(2))
    langfuse.add_generation(
        id="a-span", trace_id="x6", prompt="support.answer", version=2, start=minute(2), type="SPAN"
    )

    # When the source reads the window
    window = read()

    # Then each arm holds exactly its version's generations: samples, latency, cost
    assert window.error is None
    assert window.baseline.samples == 5
    assert window.candidate.samples == 3
    assert window.baseline.histogram.count == 5
    assert window.baseline.latency_quantile(0.5) == pytest.approx(1000, rel=RELATIVE_ACCURACY)
    assert window.candidate.latency_quantile(0.95) == pytest.approx(1500, rel=RELATIVE_ACCURACY)
    assert window.baseline.latency.total == pytest.approx(5000)
    assert window.baseline.cost.count == 5
    assert window.baseline.cost_per_request == pytest.approx(0.002)
    assert window.candidate.cost.total_sq == pytest.approx(3 * 0.004**2)


def test_the_source_asks_langfuse_for_generations_by_prompt_name_and_version(langfuse: FakeLangfuse) -> None:
    # Given a Langfuse with nothing in it
    # When the source reads
    read()

    # Then it asked the observations API, with the SDK's Basic auth, for the window's generations
    asked = langfuse.requests_to("/api/public/v2/observations")
    assert len(asked) == 2
    assert {"promptName", "promptVersion", "startTime", "type"} <= {
        condition["column"] for condition in json.loads(asked[0]["filter"][0])
    }
    assert "prompt" in asked[0]["fields"][0].split(",") and "metrics" in asked[0]["fields"][0].split(",")


def test_error_level_generations_are_errors_and_other_levels_are_not(langfuse: FakeLangfuse) -> None:
    # Given a baseline with one ERROR and one WARNING, a candidate with two ERRORs
    add_arm(langfuse, 1, [1.0, 1.0, 1.0])
    langfuse.observations[0]["level"] = "ERROR"
    langfuse.observations[1]["level"] = "WARNING"
    add_arm(langfuse, 2, [1.0, 1.0, 1.0, 1.0], level="ERROR")
    langfuse.observations[-1]["level"] = "DEBUG"

    # When the source reads
    window = read()

    # Then only level ERROR counts as an error
    assert (window.baseline.errors, window.baseline.samples) == (1, 3)
    assert (window.candidate.errors, window.candidate.samples) == (3, 4)
    assert window.candidate.error_rate == pytest.approx(0.75)


def test_scores_attached_to_an_arms_generations_or_traces_are_averaged(langfuse: FakeLangfuse) -> None:
    # Given generations of both arms, and scores on them, on their traces, and elsewhere
    add_arm(langfuse, 1, [1.0, 1.0])
    add_arm(langfuse, 2, [1.0])
    langfuse.add_score(id="s1", name="helpfulness", value=0.9, trace_id="v1-t0", observation_id="v1-g0")
    langfuse.add_score(id="s2", name="helpfulness", value=0.6, trace_id="v1-t1")  # on the trace
    langfuse.add_score(id="s3", name="helpfulness", value=0.3, trace_id="v2-t0", observation_id="v2-g0")
    langfuse.add_score(id="s4", name="helpfulness", value=0.0, trace_id="v1-t0", observation_id="a-span")
    langfuse.add_score(id="s5", name="helpfulness", value=0.0, trace_id="unrelated")
    langfuse.add_score(id="s6", name="tone", value="friendly", trace_id="v1-t0", data_type="CATEGORICAL")
    langfuse.add_score(id="s7", name="resolved", value=True, trace_id="v2-t0", data_type="BOOLEAN")
    langfuse.add_score(id="s8", name="resolved", value=False, trace_id="v1-t0", data_type="BOOLEAN")

    # When a score:* gate reads
    window = read(gate("score:*"))

    # Then each arm averages the numeric and boolean scores attached to its generations
    assert window.baseline.score_means() == pytest.approx({"helpfulness": 0.75, "resolved": 0.0})
    assert window.candidate.score_means() == pytest.approx({"helpfulness": 0.3, "resolved": 1.0})
    helpfulness = window.baseline.score("helpfulness")
    assert (helpfulness.count, helpfulness.total_sq) == (2, pytest.approx(0.81 + 0.36))


def test_a_named_score_gate_reads_only_that_score(langfuse: FakeLangfuse) -> None:
    # Given two scores on a baseline generation
    add_arm(langfuse, 1, [1.0])
    langfuse.add_score(id="s1", name="helpfulness", value=0.9, trace_id="v1-t0")
    langfuse.add_score(id="s2", name="tone", value=0.1, trace_id="v1-t0")

    # When a score:helpfulness gate reads
    window = read(gate("score:helpfulness"))

    # Then only helpfulness is asked for and read
    assert window.baseline.score_means() == {"helpfulness": 0.9}
    assert langfuse.requests_to("/api/public/v3/scores")[0]["name"] == ["helpfulness"]


def test_gates_without_scores_do_not_ask_for_scores(langfuse: FakeLangfuse) -> None:
    # Given a scored generation
    add_arm(langfuse, 1, [1.0])
    langfuse.add_score(id="s1", name="helpfulness", value=0.9, trace_id="v1-t0")

    # When only an error-rate gate reads
    window = read(ERROR_GATE)

    # Then the scores API is not called
    assert window.baseline.scores == ()
    assert langfuse.requests_to("/api/public/v3/scores") == []


def test_every_page_of_generations_and_scores_is_followed(langfuse: FakeLangfuse) -> None:
    # Given a server that answers two items a page
    langfuse.page_size = 2
    add_arm(langfuse, 1, [1.0] * 5, level="ERROR")
    for i in range(5):
        langfuse.add_score(id=f"s{i}", name="helpfulness", value=0.5, trace_id=f"v1-t{i}")

    # When the source reads
    window = read(ERROR_GATE, gate("score:helpfulness"))

    # Then it followed the cursors to the last page of each
    assert (window.baseline.samples, window.baseline.errors) == (5, 5)
    assert window.baseline.score("helpfulness").count == 5
    baseline_pages = [
        r for r in langfuse.requests_to("/api/public/v2/observations") if '"value": 1}' in r["filter"][0]
    ]
    assert len(baseline_pages) == 3
    assert [("cursor" in r) for r in baseline_pages] == [False, True, True]
    assert (
        len(langfuse.requests_to("/api/public/v3/scores")) == 3 + 0
    )  # baseline 3 pages, no candidate traces


def test_reading_stops_at_the_bound_on_generations(langfuse: FakeLangfuse) -> None:
    # Given more generations than the source may read
    langfuse.page_size = 2
    add_arm(langfuse, 1, [1.0] * 9)

    # When a source bounded at 5 generations an arm reads
    window = read(source=LangfuseSource(max_generations=5))

    # Then it read 5 (the newest) in 3 pages and asked for no more than it could take
    assert window.baseline.samples == 5
    asked = [
        r for r in langfuse.requests_to("/api/public/v2/observations") if '"value": 1}' in r["filter"][0]
    ]
    assert [r["limit"] for r in asked] == [["5"], ["3"], ["1"]]


def test_a_slow_server_makes_the_source_unavailable(langfuse: FakeLangfuse) -> None:
    # Given a server that takes 3 s to answer
    langfuse.delay_seconds = 3.0
    started = time.monotonic()

    # When a source with a 0.3 s budget reads
    with pytest.raises(SourceUnavailable) as unavailable:
        read(source=LangfuseSource(timeout_seconds=0.3))

    # Then it gives up within its budget, saying so
    assert time.monotonic() - started < 2.0
    assert "did not answer within" in unavailable.value.cause


def test_a_server_error_makes_the_source_unavailable(langfuse: FakeLangfuse) -> None:
    # Given a server that answers 500
    langfuse.fail_status = 500

    # When the source reads, then it is unavailable with the status, after one request (no retries)
    with pytest.raises(SourceUnavailable, match="HTTP 500"):
        read()
    assert len(langfuse.requests) == 1


def test_wrong_keys_make_the_source_unavailable_naming_the_keys(
    langfuse: FakeLangfuse, settings: Settings
) -> None:
    # Given a secret key the server does not know
    settings.LANGFUSE_SECRET_KEY = "sk-lf-wrong"

    # When the source reads, then it says the keys were refused
    with pytest.raises(SourceUnavailable, match="refused the API keys .HTTP 401.*LANGFUSE_SECRET_KEY"):
        read()


@pytest.mark.parametrize("missing", ["LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"])
def test_an_unconfigured_langfuse_is_unavailable_with_the_setting_to_set(
    langfuse: FakeLangfuse, settings: Settings, missing: str
) -> None:
    # Given a key missing from the settings
    setattr(settings, missing, "")

    # When the source reads, then it names the missing setting and asks nothing
    with pytest.raises(SourceUnavailable, match=f"Langfuse is not configured: set {missing}"):
        read()
    assert langfuse.requests == []


def test_an_unreachable_server_makes_the_source_unavailable(settings: Settings) -> None:
    # Given a server address where nothing listens
    with serve(FakeLangfuse()) as url:
        pass
    settings.LANGFUSE_BASE_URL = url
    settings.LANGFUSE_PUBLIC_KEY, settings.LANGFUSE_SECRET_KEY = "pk", "sk"

    # When the source reads, then it is unavailable
    with pytest.raises(SourceUnavailable, match="unreachable"):
        read()


@pytest.mark.django_db  # the ingest source is read too, for the traffic check
def test_an_unavailable_langfuse_gives_insufficient_data_with_the_cause_not_a_rollback(
    settings: Settings,
) -> None:
    # Given no Langfuse configured and a langfuse gate on a running step
    settings.LANGFUSE_PUBLIC_KEY = ""
    plan = Plan.from_json(
        [
            {"percent": 10, "min_duration_s": 0, "min_samples": 0},
            {"percent": 100, "min_duration_s": 0, "min_samples": 0},
        ]
    )

    # When the controller reads the sources and decides
    windows = read_windows(rollout=ROLLOUT, gates=[ERROR_GATE], since=SINCE, until=UNTIL)
    decision = decide(
        plan=plan, step_index=0, step_started_at=SINCE, now=UNTIL, windows=windows, gates=[ERROR_GATE]
    )

    # Then the gate is insufficient_data naming the cause, and the rollout holds
    assert decision.action == "hold"
    assert decision.verdicts[0].verdict == INSUFFICIENT
    assert "Langfuse is not configured" in decision.verdicts[0].detail
