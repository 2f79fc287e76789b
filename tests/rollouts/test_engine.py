import json
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollouts.engine import (
    Action,
    Approval,
    GatesPassing,
    SamplesPerArm,
    SourceWindow,
    StepConditions,
    TimeOnStep,
    decide,
)
from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN, Gate, Plan, Step
from rollouts.stats import ArmStats, Moments, histogram_from_counts, latency_bucket_index

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@cache
def arm(n, *, error_rate=0.01, latency_ms=800.0, score=0.8, cost=0.002, names=("helpfulness",), seed=0):
    """n requests of the reference traffic: lognormal latency (sigma 0.5), normal score/cost."""
    rng = random.Random(f"{seed}:{n}")
    latencies = [latency_ms * math.exp(rng.gauss(0, 0.5)) for _ in range(n)]
    costs = [max(0.0, rng.gauss(cost, 0.0005)) for _ in range(n)]
    scores = {name: [rng.gauss(score, 0.15) for _ in range(n)] for name in names}
    return ArmStats(
        samples=n,
        errors=round(n * error_rate),
        latency=Moments(n, sum(latencies), sum(x * x for x in latencies)),
        histogram=histogram_from_counts(Counter(latency_bucket_index(x) for x in latencies)),
        cost=Moments(n, sum(costs), sum(c * c for c in costs)),
        scores=tuple((name, Moments(n, sum(v), sum(x * x for x in v))) for name, v in scores.items()),
    )


def run(candidate=None, baseline=None, *, elapsed=700, **kwargs):
    """decide() at the 10% step, 27,000 baseline and 3,000 candidate requests by default."""
    baseline = arm(27000, seed=1) if baseline is None else baseline
    candidate = arm(3000, seed=2) if candidate is None else candidate
    args = {
        "plan": DEFAULT_PLAN,
        "step_index": 0,
        "step_started_at": T0,
        "now": T0 + timedelta(seconds=elapsed),
        "windows": {"ingest": SourceWindow(baseline, candidate)},
        "gates": DEFAULT_GATES,
    }
    return decide(**(args | kwargs))


def verdict_of(decision, metric):
    (verdict,) = [v for v in decision.verdicts if v.metric == metric]
    return verdict


# --- decisions ----------------------------------------------------------------------------


def test_equal_arms_advance_to_the_next_step_after_min_duration():
    decision = run()

    assert decision.action == Action.ADVANCE
    assert (decision.step_index, decision.percent) == (1, 25)
    assert {v.verdict for v in decision.verdicts} == {"pass"}
    assert "25%" in decision.reason


def test_failing_error_rate_gate_rolls_back_naming_the_gate():
    decision = run(arm(3000, error_rate=0.03, seed=2))

    assert decision.action == Action.ROLLBACK
    assert decision.percent == 0
    assert verdict_of(decision, "error_rate").verdict == "fail"
    assert "error_rate failed" in decision.reason
    assert "3.00%" in decision.reason and "allowed: at most +1.00 pts vs baseline" in decision.reason


def test_failing_gate_with_on_fail_pause_pauses_instead_of_rolling_back():
    gates = [Gate(metric="error_rate", rule="max_increase_abs", limit=0.01, on_fail="pause")]

    decision = run(arm(3000, error_rate=0.03, seed=2), gates=gates)

    assert decision.action == Action.PAUSE
    assert decision.percent == 10


def test_p95_latency_regression_rolls_back_naming_the_numbers():
    decision = run(arm(3000, latency_ms=1200.0, seed=2))

    assert decision.action == Action.ROLLBACK
    latency = verdict_of(decision, "latency_p95_ms")
    assert latency.verdict == "fail"
    assert latency.candidate == pytest.approx(1.5 * latency.baseline, rel=0.1)
    assert "latency_p95_ms failed" in decision.reason


def test_eval_score_drop_rolls_back():
    decision = run(arm(3000, score=0.7, seed=2))

    assert decision.action == Action.ROLLBACK
    assert verdict_of(decision, "score:helpfulness").verdict == "fail"


def test_small_regression_within_the_limit_passes():
    decision = run(arm(3000, latency_ms=840.0, seed=2))

    assert verdict_of(decision, "latency_p95_ms").verdict == "pass"


@pytest.mark.parametrize(
    ("gate", "metric", "candidate"),
    [
        # 1% -> 20% errors (limit +1 pt); 800 -> 4,000 ms p95 (limit +20%); 0.8 -> 0.3 score.
        (Gate(metric="error_rate", rule="max_increase_abs", limit=0.01), "error_rate", {"error_rate": 0.2}),
        (
            Gate(metric="latency_p95_ms", rule="max_increase_pct", limit=20),
            "latency_p95_ms",
            {"latency_ms": 4000},
        ),
        (Gate(metric="score:*", rule="max_drop_abs", limit=0.05), "score:helpfulness", {"score": 0.3}),
    ],
)
def test_a_regression_many_times_the_limit_fails_as_soon_as_min_samples_are_met(gate, metric, candidate):
    decision = run(arm(200, seed=2, **candidate), arm(200, seed=1), gates=[gate])

    assert decision.action == Action.ROLLBACK
    assert verdict_of(decision, metric).verdict == "fail"


def test_a_fast_failure_states_how_large_the_regression_surely_is():
    gate = Gate(metric="error_rate", rule="max_increase_abs", limit=0.01)

    decision = run(arm(200, error_rate=0.3, seed=2), arm(200, seed=1), gates=[gate])

    detail = verdict_of(decision, "error_rate").detail
    assert "a regression beyond the limit (at least +" in detail
    least = float(detail.split("at least +")[1].split(" pts")[0]) / 100
    assert 0.01 < least < 0.3 - 0.01  # beyond the limit, below the observed difference


def test_an_error_rate_far_over_an_absolute_limit_fails_as_soon_as_min_samples_are_met():
    gate = Gate(metric="error_rate", rule="max", limit=0.05)

    decision = run(arm(200, error_rate=0.2, seed=2), arm(200, seed=1), gates=[gate])

    assert decision.action == Action.ROLLBACK
    assert verdict_of(decision, "error_rate").verdict == "fail"


def test_holds_before_min_duration_even_when_every_gate_passes():
    decision = run(elapsed=300)

    assert decision.action == Action.HOLD
    assert {v.verdict for v in decision.verdicts} == {"pass"}
    assert "5 min of 10 min" in decision.reason


def test_holds_until_each_arm_has_min_samples():
    decision = run(arm(150, seed=2), arm(1350, seed=1), gates=[])

    assert decision.action == Action.HOLD
    assert "candidate 150 of 200 samples" in decision.reason


def test_no_gates_advance_on_time_and_samples_alone():
    assert run(gates=[]).action == Action.ADVANCE


def test_gate_below_its_min_samples_is_insufficient_data_however_bad_it_looks():
    decision = run(arm(150, error_rate=0.2, seed=2), arm(1350, seed=1))

    assert decision.action == Action.HOLD
    assert verdict_of(decision, "error_rate").verdict == "insufficient_data"
    assert "needs 200 observations per arm" in verdict_of(decision, "error_rate").detail


def test_p99_gate_waits_for_enough_observations_above_the_quantile():
    gates = [Gate(metric="latency_p99_ms", rule="max_increase_pct", limit=20, min_samples=200)]

    decision = run(arm(300, seed=2), arm(2700, seed=1), gates=gates)

    assert verdict_of(decision, "latency_p99_ms").verdict == "insufficient_data"
    assert "needs 500" in decision.reason


def test_manual_approval_step_holds_until_promote():
    plan = Plan((Step(10, 600, 200, approval="manual"), Step(100, 0, 0)))

    held = run(plan=plan)
    promoted = run(plan=plan, promote=True)

    assert held.action == Action.HOLD
    assert "manual approval" in held.reason
    assert promoted.action == Action.ADVANCE
    assert promoted.percent == 100


def test_promote_advances_past_the_wait_min_samples_and_insufficient_data():
    decision = run(arm(50, seed=2), arm(450, seed=1), elapsed=10, promote=True)

    assert decision.action == Action.ADVANCE
    assert decision.percent == 25
    assert "promoted past" in decision.reason
    assert "insufficient_data" in decision.reason


def test_promote_never_passes_a_failing_gate():
    decision = run(arm(3000, error_rate=0.03, seed=2), promote=True)

    assert decision.action == Action.ROLLBACK


def test_step_pauses_at_max_duration_naming_each_gate_still_insufficient():
    decision = run(arm(100, seed=2), arm(900, seed=1), elapsed=86400)

    assert decision.action == Action.PAUSE
    assert "still insufficient_data" in decision.reason
    for metric in ("latency_p95_ms", "error_rate", "score:helpfulness"):
        assert metric in decision.reason


def test_passing_step_still_advances_after_max_duration():
    assert run(elapsed=90000).action == Action.ADVANCE


def run_last_step(candidate, *, elapsed=0, min_duration_s=0, gates=DEFAULT_GATES, **kwargs):
    plan = Plan((Step(10, 600, 200), Step(100, min_duration_s, 0)))
    return decide(
        plan=plan,
        step_index=1,
        step_started_at=T0,
        now=T0 + timedelta(seconds=elapsed),
        windows={"ingest": SourceWindow(ArmStats(), candidate)},
        gates=gates,
        **kwargs,
    )


def test_last_step_succeeds_once_its_min_duration_has_passed():
    early = run_last_step(arm(5000, seed=2), elapsed=100, min_duration_s=300)
    done = run_last_step(arm(5000, seed=2), elapsed=300, min_duration_s=300)

    assert early.action == Action.HOLD
    assert done.action == Action.SUCCEED
    assert done.percent == 100


def test_last_step_checks_only_absolute_gates():
    decision = run_last_step(arm(5000, seed=2))

    assert [v.metric for v in decision.verdicts] == ["cost_per_request"]


def test_last_step_is_not_held_by_insufficient_data():
    decision = run_last_step(ArmStats())

    assert verdict_of(decision, "cost_per_request").verdict == "insufficient_data"
    assert decision.action == Action.SUCCEED


def test_last_step_rolls_back_when_an_absolute_gate_fails():
    decision = run_last_step(arm(5000, cost=0.08, seed=2))

    assert decision.action == Action.ROLLBACK
    assert "cost_per_request failed" in decision.reason
    assert "$0.0800" in decision.reason


def test_source_error_yields_insufficient_data_with_the_cause_never_a_rollback():
    gates = [Gate(metric="error_rate", rule="max_increase_abs", limit=0.01, source="langfuse")]
    bad = SourceWindow(arm(27000, seed=1), arm(3000, error_rate=0.2), error="timed out after 5 s")

    decision = run(gates=gates, windows={"ingest": SourceWindow(arm(27000), arm(3000)), "langfuse": bad})

    verdict = verdict_of(decision, "error_rate")
    assert verdict.verdict == "insufficient_data"
    assert "timed out after 5 s" in verdict.detail
    assert decision.action == Action.HOLD


def test_gate_whose_source_was_not_read_is_insufficient_data():
    gates = [Gate(metric="error_rate", rule="max_increase_abs", limit=0.01, source="prometheus")]

    decision = run(gates=gates)

    assert verdict_of(decision, "error_rate").detail == "no data from source prometheus"


def test_score_wildcard_checks_every_score_name_reported():
    names = ("accuracy", "helpfulness")

    decision = run(arm(3000, names=names, seed=2), arm(27000, names=names, seed=1))

    assert {v.metric for v in decision.verdicts} >= {"score:accuracy", "score:helpfulness"}


score_names = st.sets(st.sampled_from(["accuracy", "helpfulness", "tone", "bogus"]))


@settings(max_examples=30, deadline=None)
@given(score_names, score_names)
def test_score_wildcard_checks_exactly_the_names_both_arms_reported(baseline_names, candidate_names):
    baseline = arm(300, names=tuple(sorted(baseline_names)), seed=1)
    candidate = arm(300, names=tuple(sorted(candidate_names)), seed=2)

    decision = run(candidate, baseline)

    checked = {v.metric.removeprefix("score:") for v in decision.verdicts if v.metric.startswith("score:")}
    assert checked == baseline_names & candidate_names


def test_score_wildcard_with_no_scores_reported_adds_no_check():
    decision = run(arm(3000, names=(), seed=2), arm(27000, names=(), seed=1))

    assert not [v for v in decision.verdicts if v.metric.startswith("score:")]
    assert decision.action == Action.ADVANCE


def test_decision_and_verdicts_serialize_to_the_api_shape():
    data = run().to_json()

    assert data["action"] == "advance"
    assert set(data["verdicts"][0]) >= {"metric", "verdict", "baseline", "candidate", "detail"}
    assert [c["name"] for c in data["conditions"]] == ["time", "samples", "gates", "approval"]


# --- the conditions a decision checked ----------------------------------------------------


def test_a_decision_carries_the_conditions_it_checked():
    decision = run(arm(150, seed=2), arm(1350, seed=1), elapsed=300)

    assert decision.conditions == StepConditions(
        time=TimeOnStep(elapsed_s=300.0, min_duration_s=600, max_duration_s=86400),
        samples=SamplesPerArm(baseline=1350, candidate=150, min_samples=200),
        gates=GatesPassing(
            checked=5,
            failing=(),
            waiting=("latency_p95_ms", "error_rate", "cost_per_request", "score:helpfulness"),
        ),
        approval=Approval(manual=False),
    )
    assert not decision.conditions.met


def test_samples_are_counted_from_whichever_source_answered_with_the_most():
    langfuse_gate = Gate(metric="error_rate", rule="max_increase_abs", limit=0.05, source="langfuse")
    windows = {
        "langfuse": SourceWindow(arm(900, seed=1), arm(300, seed=2)),
        "ingest": SourceWindow(arm(50, seed=3), arm(20, seed=4)),
        "prometheus": SourceWindow(arm(5000), arm(5000), error="down"),
    }

    decision = run(windows=windows, gates=[langfuse_gate])

    assert decision.conditions.samples == SamplesPerArm(baseline=900, candidate=300, min_samples=200)
    assert decision.action == Action.ADVANCE


def test_the_last_step_checks_no_samples_and_is_not_held_by_insufficient_data():
    decision = run_last_step(arm(10, seed=2), elapsed=60)

    assert decision.conditions.samples is None
    assert decision.conditions.gates.waiting == ()
    assert decision.conditions.met


# --- properties ---------------------------------------------------------------------------


@st.composite
def arms(draw, max_n=6000):
    """Arbitrary (consistent) arm statistics."""
    n = draw(st.integers(0, max_n))
    weights = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6))
    first = draw(st.integers(300, 380))
    counts = {first + 4 * i: n * w // max(1, sum(weights)) for i, w in enumerate(weights)}

    def moments(mean, sd):
        count = draw(st.integers(0, n))
        return Moments(count, mean * count, (mean * mean + sd * sd) * count)

    return ArmStats(
        samples=n,
        errors=draw(st.integers(0, n)),
        latency=Moments(sum(counts.values()), 0.0, 0.0),
        histogram=histogram_from_counts(counts),
        cost=moments(draw(st.floats(0, 0.1)), 0.001),
        scores=tuple(
            (name, moments(draw(st.floats(0, 1)), 0.15))
            for name in draw(st.sets(st.sampled_from(["helpfulness", "tone"])))
        ),
    )


manual_plan = Plan((Step(10, 600, 200, approval="manual"), Step(50, 600, 200), Step(100, 60, 0)))


@st.composite
def situations(draw, max_n=6000):
    plan = draw(st.sampled_from([DEFAULT_PLAN, manual_plan]))
    index = draw(st.integers(0, len(plan.steps) - 1))
    last = plan.steps[index].percent == 100
    return {
        "plan": plan,
        "step_index": index,
        "step_started_at": T0,
        "now": T0 + timedelta(seconds=draw(st.integers(0, 100_000))),
        "windows": {"ingest": SourceWindow(ArmStats() if last else draw(arms(max_n)), draw(arms(max_n)))},
        "gates": DEFAULT_GATES,
        "promote": draw(st.booleans()),
    }


@given(situations())
def test_never_advances_with_a_failing_gate(situation):
    decision = decide(**situation)

    if any(v.verdict == "fail" for v in decision.verdicts):
        assert decision.action in (Action.ROLLBACK, Action.PAUSE)


@given(situations(max_n=199))
def test_never_rolls_back_when_no_gate_has_min_samples(situation):
    situation["step_index"] = min(situation["step_index"], len(situation["plan"].steps) - 2)

    decision = decide(**situation)

    assert decision.action != Action.ROLLBACK
    assert all(v.verdict != "fail" for v in decision.verdicts if v.metric != "traffic")


@given(situations())
def test_decision_is_deterministic(situation):
    assert decide(**situation) == decide(**situation)


@given(situations(), st.integers(1, 200_000))
@settings(max_examples=200)
def test_more_time_never_undoes_an_advance(situation, later):
    first = decide(**situation)
    second = decide(**(situation | {"now": situation["now"] + timedelta(seconds=later)}))

    if first.action in (Action.ADVANCE, Action.SUCCEED):
        assert second.action == first.action


@given(situations())
def test_promote_advances_unless_a_gate_fails(situation):
    decision = decide(**(situation | {"promote": True}))

    failing = any(v.verdict == "fail" for v in decision.verdicts)
    assert decision.action in (
        (Action.ROLLBACK, Action.PAUSE) if failing else (Action.ADVANCE, Action.SUCCEED)
    )


@given(arms(), st.integers(0, 1000))
def test_last_step_succeeds_after_min_duration_unless_an_absolute_gate_fails(candidate, elapsed):
    decision = run_last_step(candidate, elapsed=elapsed, min_duration_s=300)

    assert all(g.rule in ("max", "min") for g in decision.verdicts)
    if any(v.verdict == "fail" for v in decision.verdicts):
        assert decision.action == Action.ROLLBACK
    elif elapsed >= 300:
        assert decision.action == Action.SUCCEED
    else:
        assert decision.action == Action.HOLD


@given(situations())
def test_pauses_at_max_duration_when_a_gate_is_still_insufficient(situation):
    situation |= {"promote": False, "step_index": 1, "plan": DEFAULT_PLAN}
    situation["now"] = T0 + timedelta(seconds=86400)

    decision = decide(**situation)

    gates = [v for v in decision.verdicts if v.metric != "traffic"]
    verdicts = {v.verdict for v in decision.verdicts}
    if "fail" not in verdicts and "insufficient_data" in {v.verdict for v in gates}:
        assert decision.action == Action.PAUSE
        for v in gates:
            if v.verdict == "insufficient_data":
                assert v.metric in decision.reason


def test_candidate_without_errors_yet_does_not_pass_the_error_rate_gate_early():
    gates = [Gate(metric="error_rate", rule="max_increase_abs", limit=0.01)]

    decision = run(arm(200, error_rate=0.0, seed=2), arm(1800, seed=1), gates=gates)

    assert verdict_of(decision, "error_rate").verdict == "insufficient_data"


@given(situations())
def test_a_decision_advances_by_itself_exactly_when_every_condition_it_checked_is_met(situation):
    decision = decide(**(situation | {"promote": False}))

    if not decision.conditions.gates.failing:
        assert (decision.action in (Action.ADVANCE, Action.SUCCEED)) == decision.conditions.met


@given(situations())
def test_a_step_pauses_for_its_max_duration_exactly_as_its_conditions_say(situation):
    decision = decide(**(situation | {"promote": False}))

    conditions = decision.conditions
    if not conditions.gates.failing and not conditions.met:
        paused = conditions.pauses_at_max_duration and conditions.time.past_max
        assert (decision.action == Action.PAUSE) == paused


@given(situations())
def test_the_samples_a_decision_checked_are_the_sources_requests(situation):
    decision = decide(**situation)

    (window,) = situation["windows"].values()
    samples = decision.conditions.samples
    if samples is not None:
        assert (samples.baseline, samples.candidate) == (window.baseline.samples, window.candidate.samples)


@given(situations())
def test_conditions_survive_a_json_round_trip(situation):
    conditions = decide(**situation).conditions

    assert StepConditions.from_json(json.loads(json.dumps(conditions.to_json()))) == conditions


# --- shadow steps ---------------------------------------------------------------------------

SHADOW_PLAN = Plan(
    (
        Step(percent=20, min_duration_s=600, min_samples=200, shadow=True),
        Step(percent=10, min_duration_s=600, min_samples=200),
        Step(percent=100, min_duration_s=0, min_samples=0),
    )
)


def test_a_passing_shadow_step_advances_to_the_first_exposed_steps_percent():
    decision = run(arm(3000, seed=2), arm(3000, seed=1), plan=SHADOW_PLAN)

    assert decision.action == Action.ADVANCE
    assert (decision.step_index, decision.percent) == (1, 10)
    assert decision.reason.startswith("advanced from shadow 20% to 10%")


def test_a_failing_shadow_rolls_back_and_a_holding_one_exposes_nobody():
    failing = run(arm(3000, error_rate=0.05, seed=2), arm(3000, seed=1), plan=SHADOW_PLAN)
    holding = run(arm(3000, seed=2), arm(3000, seed=1), plan=SHADOW_PLAN, elapsed=100)

    assert (failing.action, failing.percent) == (Action.ROLLBACK, 0)
    assert failing.reason.startswith("rolled back at shadow 20%: error_rate failed")
    assert (holding.action, holding.percent) == (Action.HOLD, 0)
    assert holding.conditions.samples is not None  # a shadow step counts both of its arms


@settings(max_examples=60, deadline=None)
@given(
    shadow_percent=st.integers(1, 100),
    errors=st.floats(0, 0.3),
    elapsed=st.integers(0, 100_000),
    promote=st.booleans(),
)
def test_a_shadow_steps_decision_never_exposes_the_candidate_beyond_the_next_exposed_step(
    shadow_percent, errors, elapsed, promote
):
    plan = Plan((Step(shadow_percent, 600, 200, shadow=True), *SHADOW_PLAN.steps[1:]))

    decision = run(
        arm(500, error_rate=round(errors, 2), seed=3),
        arm(500, seed=4),
        plan=plan,
        elapsed=elapsed,
        promote=promote,
    )

    assert decision.percent == (10 if decision.action == Action.ADVANCE else 0)
    assert decision.action != Action.SUCCEED
