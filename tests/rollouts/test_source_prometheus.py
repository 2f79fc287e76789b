"""The prometheus source against a fake Prometheus answering only the queries a test expects."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from rollouts import promql
from rollouts.engine import SourceWindow, decide
from rollouts.plan import ConfigError, Gate, GateServers, Plan
from rollouts.sources import RolloutArms, SourceUnavailable, read_windows
from rollouts.sources.prometheus import PrometheusSource, histogram_from_buckets
from rollouts.stats import RELATIVE_ACCURACY, bucket_value
from tests.fakes.prometheus_server import FakePrometheus, serve

SERVERS = GateServers(prometheus=frozenset({"eu"}), langfuse=frozenset())
ROLLOUT = RolloutArms(rollout_id=7, prompt="support.answer", baseline_version=1, candidate_version=2)
UNTIL = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(minutes=10)

REQUESTS = 'sum(increase(llm_requests_total{prompt="{prompt}",version="{version}"}[{window}]))'
ERRORS = 'sum by (code) (increase(llm_errors_total{prompt="{prompt}",version="{version}"}[{window}]))'
BUCKETS = (
    'sum by (le) (increase(llm_latency_seconds_bucket{prompt="{prompt}",version="{version}"}[{window}]))'
)


def sent(template: str, version: int, prompt: str = "support.answer") -> str:
    """The query text the source must send for an arm (what the fake is told to expect)."""
    return template.replace("{version}", str(version)).replace("{window}", "600s").replace("{prompt}", prompt)


def prometheus_gate(metric: str, query: object, **extra: object) -> Gate:
    return Gate.from_json(
        {"metric": metric, "source": "prometheus", "max_increase_pct": 20, "query": query, **extra}
    )


ERROR_GATE = prometheus_gate("error_rate", {"requests": REQUESTS, "errors": ERRORS})


def read(
    *gates: Gate, source: PrometheusSource | None = None, rollout: RolloutArms = ROLLOUT
) -> SourceWindow:
    return (source or PrometheusSource()).read(
        rollout=rollout,
        gates=gates or (ERROR_GATE,),
        since=SINCE,
        until=UNTIL,
        deadline=time.monotonic() + 10,
    )


@pytest.fixture
def prometheus(settings: Settings) -> Iterator[FakePrometheus]:
    state = FakePrometheus()
    with serve(state) as url:
        settings.PROMETHEUS_URL = url
        yield state
    assert state.unexpected == [], "the source sent queries the test did not expect"


def linear_quantile(q: float, bounds: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over (le, cumulative count) pairs, +Inf last."""
    total = bounds[-1][1]
    rank = q * total
    below, low = 0.0, 0.0
    for le, cumulative in bounds:
        if cumulative >= rank:
            if math.isinf(le):
                return low
            return low + (le - low) * (rank - below) / (cumulative - below)
        below, low = cumulative, le
    raise AssertionError("unreachable")


# --- reading figures ---------------------------------------------------------------------------


def test_error_rate_counts_come_from_the_requests_and_errors_queries_of_each_arm(
    prometheus: FakePrometheus,
) -> None:
    # Given counts for each arm (increase() extrapolates to fractions; errors come in two series)
    prometheus.register(sent(REQUESTS, 1), 10_000.4)
    prometheus.register(sent(ERRORS, 1), [({"code": "500"}, 60.2), ({"code": "429"}, 39.9)])
    prometheus.register(sent(REQUESTS, 2), [({}, 1_203.6)])
    prometheus.register(sent(ERRORS, 2), [])

    # When the source reads the window
    window = read()

    # Then each arm has its requests as samples and the summed errors
    assert (window.baseline.samples, window.baseline.errors) == (10_000, 100)
    assert (window.candidate.samples, window.candidate.errors) == (1_204, 0)


def test_in_a_shadow_step_the_queries_name_the_shadow_arms(prometheus: FakePrometheus) -> None:
    by_arm = 'sum(increase(llm_requests_total{prompt="{prompt}",arm="{arm}"}[{window}]))'
    prometheus.register(sent(by_arm, 1).replace("{arm}", "shadow_baseline"), 400.0)
    prometheus.register(sent(by_arm, 2).replace("{arm}", "shadow"), 380.0)
    shadow_step = RolloutArms(
        rollout_id=7, prompt="support.answer", baseline_version=1, candidate_version=2, shadow=True
    )

    window = read(prometheus_gate("error_rate", {"requests": by_arm, "errors": by_arm}), rollout=shadow_step)

    assert (window.baseline.samples, window.candidate.samples) == (400, 380)


def test_errors_never_exceed_requests(prometheus: FakePrometheus) -> None:
    # Given an errors counter read a moment after the requests counter, a little ahead of it
    for version in (1, 2):
        prometheus.register(sent(REQUESTS, version), 10.0)
        prometheus.register(sent(ERRORS, version), 11.0)

    # When the source reads, then every request failed, and no more
    window = read()
    assert (window.candidate.errors, window.candidate.samples) == (10, 10)


@pytest.mark.django_db  # the ingest source is read too, for the traffic check
def test_a_regression_in_prometheus_counts_rolls_the_rollout_back(prometheus: FakePrometheus) -> None:
    # Given Prometheus counts where the candidate fails five times as often as the baseline
    prometheus.register(sent(REQUESTS, 1), 90_000.0)
    prometheus.register(sent(ERRORS, 1), 900.0)
    prometheus.register(sent(REQUESTS, 2), 10_000.0)
    prometheus.register(sent(ERRORS, 2), 500.0)
    plan = Plan.from_json(
        [
            {"percent": 10, "min_duration_s": 600, "min_samples": 200},
            {"percent": 100, "min_duration_s": 0, "min_samples": 0},
        ]
    )

    # When the controller reads the sources and decides
    windows = read_windows(rollout=ROLLOUT, gates=[ERROR_GATE], since=SINCE, until=UNTIL)
    decision = decide(
        plan=plan, step_index=0, step_started_at=SINCE, now=UNTIL, windows=windows, gates=[ERROR_GATE]
    )

    # Then the gate fails on those numbers and the rollout rolls back
    assert decision.action == "rollback"
    assert "5.00%" in decision.verdicts[0].detail and "1.00%" in decision.verdicts[0].detail


def test_queries_are_evaluated_at_the_end_of_the_window(prometheus: FakePrometheus) -> None:
    # Given answers for every query
    for version in (1, 2):
        prometheus.register(sent(REQUESTS, version), 1.0)
        prometheus.register(sent(ERRORS, version), 0.0)

    # When the source reads
    read(source=PrometheusSource(timeout_seconds=4))

    # Then every query was a form POST at the window's end, with a server-side timeout
    assert len(prometheus.requests) == 4
    for request in prometheus.requests:
        assert request["method"] == "POST"
        assert float(request["time"]) == UNTIL.timestamp()
        assert 0 < float(request["timeout"]) <= 4


def test_latency_buckets_become_a_histogram_with_prometheus_quantiles(prometheus: FakePrometheus) -> None:
    # Given a Prometheus histogram (le in seconds) for each arm
    baseline = [(0.25, 1_000.0), (0.5, 4_000.0), (1.0, 9_000.0), (2.5, 9_900.0), (math.inf, 10_000.0)]
    candidate = [(0.25, 0.0), (0.5, 1_000.0), (1.0, 5_000.0), (2.5, 9_000.0), (math.inf, 10_000.0)]
    for version, buckets in ((1, baseline), (2, candidate)):
        series = [({"le": "+Inf" if math.isinf(le) else str(le)}, count) for le, count in buckets]
        prometheus.register(sent(BUCKETS, version), series)
    latency_gate = prometheus_gate("latency_p95_ms", {"buckets": BUCKETS})

    # When the source reads
    window = read(latency_gate)

    # Then each arm's quantiles are Prometheus's histogram_quantile, in ms, within 1% and a count
    for arm, buckets in ((window.baseline, baseline), (window.candidate, candidate)):
        assert arm.histogram.count == arm.samples == 10_000
        for q in (0.5, 0.9):
            expected_ms = 1000 * linear_quantile(q, buckets)
            assert arm.latency_quantile(q) == pytest.approx(expected_ms, rel=RELATIVE_ACCURACY + 0.002)
    # and the +Inf bucket sits at the highest finite bound, as histogram_quantile reports it
    assert window.candidate.latency_quantile(0.99) == pytest.approx(2500, rel=RELATIVE_ACCURACY)


def test_a_plain_string_query_on_a_latency_gate_is_its_buckets_query_and_ms_buckets_are_read_as_ms(
    prometheus: FakePrometheus,
) -> None:
    # Given histograms whose le bounds are milliseconds
    ms_buckets = BUCKETS.replace("seconds", "milliseconds")
    for version in (1, 2):
        prometheus.register(sent(ms_buckets, version), [({"le": "100"}, 50.0), ({"le": "+Inf"}, 50.0)])
    seconds_gate = prometheus_gate("latency_p50_ms", BUCKETS)

    # When a buckets_ms gate reads
    window = read(prometheus_gate("latency_p50_ms", {"buckets_ms": ms_buckets}))

    # Then the bounds are taken as ms (all 50 requests in (0, 100] ms), and a string query is `buckets`
    assert window.candidate.latency_quantile(1.0) == pytest.approx(100, rel=RELATIVE_ACCURACY)
    assert seconds_gate.query == {"buckets": BUCKETS}


def test_cost_and_named_score_moments_come_from_count_sum_and_sum_of_squares(
    prometheus: FakePrometheus,
) -> None:
    # Given count, sum and sum of squares queries for cost and for the helpfulness score
    cost = {
        f: f'llm_cost_usd_{f}{{prompt="{{prompt}}",version="{{version}}"}}' for f in promql.MOMENT_FIGURES
    }
    score = {f: f'llm_score_{f}{{prompt="{{prompt}}",score="{{score}}"}}' for f in promql.MOMENT_FIGURES}
    values = {"count": 200.0, "sum": 0.5, "sum_of_squares": 0.0015}
    for version in (1, 2):
        for figure, template in cost.items():
            prometheus.register(sent(template, version), values[figure] * version)
        for figure, template in score.items():
            prometheus.register(sent(template, version).replace("{score}", "helpfulness"), values[figure])
    gates = (
        prometheus_gate("cost_per_request", cost),
        prometheus_gate("score:helpfulness", score),
    )

    # When the source reads
    window = read(*gates)

    # Then the arms carry those moments, and their samples are the most any figure counts
    assert (window.candidate.cost.count, window.candidate.cost.total) == (400, pytest.approx(1.0))
    assert window.candidate.cost.total_sq == pytest.approx(0.003)
    assert window.baseline.score("helpfulness").mean == pytest.approx(0.0025)
    assert window.baseline.samples == 200
    assert window.candidate.samples == 400


def test_an_all_scores_gate_reads_one_series_per_score_label(prometheus: FakePrometheus) -> None:
    # Given queries grouped by the score label
    selector = '{prompt="{prompt}",version="{version}"}[{window}]'
    templates = {f: f"sum by (score) (increase(llm_score_{f}{selector}))" for f in promql.MOMENT_FIGURES}
    by_score = {"count": (100.0, 50.0), "sum": (80.0, 45.0), "sum_of_squares": (66.0, 41.0)}
    for version in (1, 2):
        for figure, template in templates.items():
            helpfulness, accuracy = by_score[figure]
            series = [({"score": "helpfulness"}, helpfulness), ({"score": "accuracy"}, accuracy)]
            prometheus.register(sent(template, version), series)

    # When a score:* gate reads
    window = read(
        Gate.from_json(
            {"metric": "score:*", "source": "prometheus", "max_drop_abs": 0.05, "query": templates}
        )
    )

    # Then every score is there with its own moments
    assert window.candidate.score_means() == pytest.approx({"helpfulness": 0.8, "accuracy": 0.9})
    assert window.candidate.score("accuracy").total_sq == 41.0


# --- escaping --------------------------------------------------------------------------------


def test_a_prompt_name_cannot_inject_promql(prometheus: FakePrometheus) -> None:
    # Given a prompt name written to end the label value and add PromQL of its own
    evil = 'x"} or vector(1) or up{a="\\{version}'
    rollout = RolloutArms(rollout_id=7, prompt=evil, baseline_version=1, candidate_version=2)
    escaped = 'x\\"} or vector(1) or up{a=\\"\\\\{version}'
    for version in (1, 2):
        prometheus.register(sent(REQUESTS, version, prompt=escaped), 10.0)
        prometheus.register(sent(ERRORS, version, prompt=escaped), 1.0)

    # When the source reads for it
    window = read(rollout=rollout)

    # Then the name stayed inside its string literal (escaped, no placeholder expanded within it)
    assert window.candidate.samples == 10
    assert all(escaped in query for query in prometheus.queries)
    assert json.loads('"' + escaped + '"') == evil


@given(st.text())
def test_any_text_stays_one_promql_string_literal(text: str) -> None:
    # Given any text, when it is escaped for a double-quoted PromQL string
    escaped = promql.promql_string(text)

    # Then decoding the literal gives the text back, and nothing in it can end the literal
    assert json.loads('"' + escaped + '"') == text
    assert "\n" not in escaped
    unescaped_quotes = escaped.replace("\\\\", "").replace('\\"', "")
    assert '"' not in unescaped_quotes


@pytest.mark.parametrize(
    "template",
    [
        "llm_requests_total{prompt={prompt}}",
        "llm_requests_total{prompt='{prompt}'}",
        'llm_requests_total # "\n{prompt}',
        'llm_requests_total{prompt="x"} + {arm}',
    ],
)
def test_a_text_placeholder_outside_double_quotes_is_refused(template: str) -> None:
    # Given a template putting a text placeholder outside a double-quoted string
    query = {"requests": template, "errors": ERRORS}

    # When the gate is created, then it is refused, saying where the placeholder belongs
    with pytest.raises(ConfigError, match="must be inside a double-quoted string"):
        prometheus_gate("error_rate", query)


# --- gate options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"metric": "error_rate", "query": {"requests": REQUESTS}}, "needs templates for errors"),
        ({"metric": "error_rate", "query": REQUESTS}, "needs an object of PromQL templates"),
        ({"metric": "error_rate"}, "needs an object of PromQL templates"),
        ({"metric": "cost_per_request", "query": {"count": "a", "sum": "b", "total": "c"}}, "not a figure"),
        (
            {"metric": "latency_p95_ms", "query": {"buckets": BUCKETS, "buckets_ms": BUCKETS}},
            "one of buckets",
        ),
        ({"metric": "error_rate", "query": {"requests": 'x{s="{score}"}', "errors": ERRORS}}, "score:<name>"),
        (
            {"metric": "latency_p95_ms", "query": BUCKETS, "server": "nowhere"},
            "PROMPTRAMP_PROMETHEUS_SERVERS",
        ),
        ({"metric": "latency_p95_ms", "query": BUCKETS, "url": "http://prometheus:9090"}, "never carry URLs"),
    ],
)
def test_invalid_prometheus_gates_are_refused(gate: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Gate.from_json({"source": "prometheus", "max_increase_pct": 20, **gate}, servers=SERVERS)


def test_query_and_server_belong_to_prometheus_gates_only() -> None:
    with pytest.raises(ConfigError, match="not for ingest"):
        Gate.from_json({"metric": "error_rate", "max_increase_abs": 0.01, "server": "eu"}, servers=SERVERS)


def test_a_prometheus_gate_round_trips_through_json() -> None:
    gate = prometheus_gate("latency_p95_ms", BUCKETS, server="eu")
    assert Gate.from_json(gate.to_json(), servers=SERVERS) == gate
    assert gate.to_json()["query"] == {"buckets": BUCKETS}


# --- an unavailable Prometheus ---------------------------------------------------------------


def test_the_gates_server_is_used_before_prometheus_url(
    prometheus: FakePrometheus, settings: Settings
) -> None:
    # Given PROMETHEUS_URL pointing nowhere and the gate naming a server of the settings
    settings.PROMPTRAMP_PROMETHEUS_SERVERS = {"eu": settings.PROMETHEUS_URL}
    settings.PROMETHEUS_URL = "http://127.0.0.1:9"
    gate = prometheus_gate("latency_p50_ms", BUCKETS, server="eu")
    for version in (1, 2):
        prometheus.register(sent(BUCKETS, version), [({"le": "1"}, 30.0), ({"le": "+Inf"}, 30.0)])

    # When the source reads, then it read the gate's server
    assert read(gate).baseline.histogram.count == 30


def test_an_unconfigured_prometheus_is_unavailable_with_the_setting_to_set(
    settings: Settings,
) -> None:
    settings.PROMETHEUS_URL = ""
    with pytest.raises(SourceUnavailable, match="'default' is not configured: set PROMETHEUS_URL"):
        read()


def test_a_slow_prometheus_makes_the_source_unavailable(prometheus: FakePrometheus) -> None:
    # Given a server that takes 3 s to answer
    prometheus.delay_seconds = 3.0
    prometheus.register(sent(REQUESTS, 1), 1.0)
    started = time.monotonic()

    # When a source with a 0.3 s budget reads, then it gives up within its budget, saying so
    with pytest.raises(SourceUnavailable, match="no complete answer within"):
        read(source=PrometheusSource(timeout_seconds=0.3))
    assert time.monotonic() - started < 2.0


def test_a_prometheus_server_error_makes_the_source_unavailable(prometheus: FakePrometheus) -> None:
    prometheus.fail_status = 500
    with pytest.raises(SourceUnavailable, match="HTTP 500"):
        read()


def test_a_prometheus_query_error_is_unavailable_with_the_status_not_the_reply(
    prometheus: FakePrometheus,
) -> None:
    # Given a query Prometheus refuses (this fake refuses queries it was not told about)
    # When the source sends it, then the cause carries the status, never the reply's words
    with pytest.raises(SourceUnavailable, match="HTTP 400 ") as unavailable:
        read()
    assert "fake Prometheus" not in unavailable.value.cause
    prometheus.unexpected.clear()


def test_a_non_numeric_answer_makes_the_source_unavailable(prometheus: FakePrometheus) -> None:
    prometheus.register(sent(REQUESTS, 1), math.nan)
    with pytest.raises(SourceUnavailable, match="requests came back as nan"):
        read()


# --- the bucket conversion -------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.floats(0.001, 100.0), st.integers(0, 5_000)),
        min_size=1,
        max_size=12,
        unique_by=lambda b: b[0],
    ),
    st.integers(0, 500),
)
def test_bucket_counts_stay_within_their_bounds(buckets: list[tuple[float, int]], overflow: int) -> None:
    # Given a Prometheus histogram (bounds in seconds, counts per bucket, some beyond the last bound)
    buckets.sort()
    cumulative, series = 0, []
    for le, count in buckets:
        cumulative += count
        series.append(({"le": repr(le)}, float(cumulative)))
    series.append(({"le": "+Inf"}, float(cumulative + overflow)))

    # When it becomes a latency histogram
    histogram = histogram_from_buckets(series, 1000.0)

    # Then no observation is lost, and each lies within its bucket's bounds (to the 1% rounding)
    assert histogram.count == cumulative + overflow
    for (le, _), (_, below_or_at) in zip(buckets, series, strict=False):
        bound_ms = le * 1000
        at_most = sum(
            c for i, c in histogram.buckets if bucket_value(i) <= bound_ms * (1 + 2 * RELATIVE_ACCURACY)
        )
        under = sum(
            c for i, c in histogram.buckets if bucket_value(i) < bound_ms * (1 - 2 * RELATIVE_ACCURACY)
        )
        assert at_most >= below_or_at >= under
