"""The built-in traffic check of the decision engine (pure: no database)."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rollouts.engine import ROLLOUT_ALPHA, Action, SourceWindow, decide
from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN, Gate, TrafficCheck
from rollouts.stats import ArmExposures, ArmStats, Exposures
from tests.rollouts.test_engine import SHADOW_PLAN, arm

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAUSE, ROLLBACK, OBSERVE = TrafficCheck("pause"), TrafficCheck("rollback"), TrafficCheck("observe")


def exposures(base: int, cand: int, *, units: tuple[int, int] = (0, 0), clustering: float = 1.0) -> Exposures:
    def one(count: int, seen: int) -> ArmExposures:
        return ArmExposures(count, seen, count, round(count * clustering))

    return Exposures(one(base, units[0]), one(cand, units[1]))


def run(
    window: SourceWindow,
    *,
    traffic: TrafficCheck = PAUSE,
    elapsed: int = 700,
    step_index: int = 0,
    plan=DEFAULT_PLAN,
    **kwargs,
):
    return decide(
        plan=plan,
        step_index=step_index,
        step_started_at=T0,
        now=T0 + timedelta(seconds=elapsed),
        windows={"ingest": window},
        gates=kwargs.pop("gates", DEFAULT_GATES),
        traffic=traffic,
        **kwargs,
    )


def traffic_of(decision):
    (verdict,) = [v for v in decision.verdicts if v.metric == "traffic"]
    return verdict


# --- what it catches ----------------------------------------------------------------------


def test_a_candidate_that_loses_30_percent_of_its_reports_is_paused_naming_the_check():
    window = SourceWindow(arm(27000, seed=1), arm(2100, seed=2), exposures=exposures(27000, 3000))

    decision = run(window)

    assert decision.action == Action.PAUSE
    assert traffic_of(decision).verdict == "fail"
    assert "traffic failed" in decision.reason and "reports too few" in decision.reason
    assert "0.70 candidate vs 1.00 baseline" in decision.reason


def test_on_fail_rollback_rolls_back_and_observe_only_records_the_verdict():
    window = SourceWindow(arm(27000, seed=1), arm(2100, seed=2), exposures=exposures(27000, 3000))

    rolled = run(window, traffic=ROLLBACK)
    observed = run(window, traffic=OBSERVE)

    assert (rolled.action, rolled.percent) == (Action.ROLLBACK, 0)
    assert traffic_of(observed).verdict == "fail"
    assert traffic_of(observed).on_fail == "observe"
    assert observed.action == Action.ADVANCE
    assert observed.conditions.gates.failing == ()


def test_a_share_of_units_off_the_percent_fails_and_one_within_it_passes():
    outcomes = SourceWindow(arm(27000, seed=1), arm(3000, seed=2))
    off = SourceWindow(
        outcomes.baseline, outcomes.candidate, exposures=exposures(27000, 3000, units=(8200, 1800))
    )
    within = SourceWindow(
        outcomes.baseline, outcomes.candidate, exposures=exposures(27000, 3000, units=(9000, 1000))
    )

    assert traffic_of(run(off)).verdict == "fail"
    assert "candidate share 18.0% of 10,000 distinct units" in traffic_of(run(off)).detail
    assert traffic_of(run(within)).verdict == "pass"


def test_without_exposure_counts_the_share_counts_outcomes_and_reports_are_not_checked():
    lopsided = run(SourceWindow(arm(27000, seed=1), arm(600, seed=2)))
    even = run(SourceWindow(arm(27000, seed=1), arm(3000, seed=2)))

    assert traffic_of(lopsided).verdict == "fail"
    assert "of 27,600 outcomes" in traffic_of(lopsided).detail
    assert "outcomes per exposure not checked (no exposure counts)" in traffic_of(even).detail
    assert traffic_of(even).verdict == "pass"
    assert even.action == Action.ADVANCE


def test_a_candidate_that_reports_nothing_fails_at_once():
    window = SourceWindow(arm(2700, seed=1), ArmStats(), exposures=exposures(2700, 300))

    assert run(window, elapsed=60).action == Action.PAUSE


def test_it_never_holds_an_advance_while_it_is_still_inconclusive():
    window = SourceWindow(
        arm(27000, seed=1), arm(2640, seed=2), exposures=exposures(27000, 3000, clustering=400)
    )

    decision = run(window)

    assert traffic_of(decision).verdict == "insufficient_data"
    assert decision.action == Action.ADVANCE
    assert "traffic" not in decision.conditions.gates.waiting


def test_the_last_step_has_no_traffic_check():
    decision = run(SourceWindow(ArmStats(), arm(3000, seed=2)), step_index=3)

    assert all(v.metric != "traffic" for v in decision.verdicts)


def test_clustered_traffic_needs_more_evidence_for_the_same_loss():
    counts = (arm(27000, seed=1), arm(2300, seed=2))
    plain = run(SourceWindow(*counts, exposures=exposures(27000, 3000)))
    clustered = run(SourceWindow(*counts, exposures=exposures(27000, 3000, clustering=200)))

    assert traffic_of(plain).verdict == "fail"
    assert traffic_of(clustered).verdict != "fail"


def test_the_check_takes_a_share_of_the_rollout_alpha_unless_it_observes():
    """The gates' fail threshold (ln 2/alpha, in each detail) is higher when the traffic check
    shares the budget than when it only observes."""
    window = SourceWindow(arm(27000, seed=1), arm(3000, seed=2), exposures=exposures(27000, 3000))

    def fail_threshold(decision):
        detail = next(v.detail for v in decision.verdicts if v.metric == "error_rate")
        return float(detail.split("fail >= ")[1].split(",")[0]) if "fail >= " in detail else None

    gates = [Gate(metric="error_rate", rule="max_increase_abs", limit=0.01, min_samples=30)]
    few = SourceWindow(window.baseline, arm(100, seed=2), exposures=window.exposures)
    shared = run(few, elapsed=60, gates=gates)
    alone = run(few, elapsed=60, gates=gates, traffic=OBSERVE)
    steps = len(DEFAULT_PLAN.steps)
    assert fail_threshold(shared) == round(math.log(2 / (ROLLOUT_ALPHA / (steps * 2))), 1)
    assert fail_threshold(alone) == round(math.log(2 / (ROLLOUT_ALPHA / steps)), 1)


# --- in a shadow step (SHADOW_PLAN: shadow 20%, then 10%, then 100%) -----------------------


def shadow_window(shadow_exposures: int, shadow_reports: int, *, clustering: float = 1.0) -> SourceWindow:
    """A shadow step's window: 27,000 baseline calls, all reported (the sample's 5,400 are the
    gates' baseline), and the shadow runs' exposures and reports."""
    return SourceWindow(
        arm(5400, seed=1),
        arm(shadow_reports, seed=2),
        exposures=exposures(27000, shadow_exposures, clustering=clustering),
        baseline_reports=27000,
    )


def test_a_shadow_that_loses_30_percent_of_its_reports_is_paused_before_anyone_sees_the_candidate():
    decision = run(shadow_window(5400, 3780), plan=SHADOW_PLAN)

    assert (decision.action, decision.percent) == (Action.PAUSE, 0)
    assert traffic_of(decision).verdict == "fail"
    assert decision.reason.startswith("paused at shadow 20%: traffic failed")
    assert "0.70 shadow vs 1.00 baseline (3,780/5,400 vs 27,000/27,000" in decision.reason
    assert "the shadow reports too few" in decision.reason


def test_an_honest_shadow_passes_whatever_share_of_the_sample_the_sdks_ran():
    """SDKs drop the shadow runs beyond their caps: 1,000 runs where the sample had 5,400 calls
    is no failure, as long as each run reports."""
    decision = run(shadow_window(1000, 1000), plan=SHADOW_PLAN, gates=[])

    verdict = traffic_of(decision)
    assert verdict.verdict == "pass", verdict.detail
    assert verdict.detail.startswith("share not checked in a shadow step")
    assert "outcomes per exposure 1.00 shadow vs 1.00 baseline" in verdict.detail
    assert decision.action == Action.ADVANCE


def test_a_shadow_step_without_shadow_exposures_is_not_checked_and_says_why():
    window = SourceWindow(arm(5400, seed=1), arm(5400, seed=2), baseline_reports=27000)

    verdict = traffic_of(run(window, plan=SHADOW_PLAN))

    assert verdict.verdict == "insufficient_data"
    assert verdict.detail == (
        "share not checked in a shadow step (SDKs cap their shadow runs); "
        "outcomes per exposure not checked (no exposure counts)"
    )


# --- properties ---------------------------------------------------------------------------


@given(st.integers(300, 200_000), st.sampled_from([0, 1, 2]), st.floats(1, 500))
def test_traffic_exactly_as_planned_never_fails(total, step_index, clustering):
    percent = DEFAULT_PLAN.steps[step_index].percent
    cand = total * percent // 100
    scaled = SourceWindow(
        ArmStats(samples=total - cand),
        ArmStats(samples=cand),
        exposures=exposures(total - cand, cand, units=(total - cand, cand), clustering=clustering),
    )

    assert traffic_of(run(scaled, step_index=step_index)).verdict != "fail"


@given(
    st.integers(0, 2),
    st.sampled_from([PAUSE, ROLLBACK, OBSERVE]),
    st.integers(30, 50_000),
    st.integers(0, 50_000),
)
def test_the_traffic_verdict_alone_never_holds_nor_blocks_unless_it_fails(step_index, traffic, base, cand):
    """With no gates, time and samples met, the step advances unless the traffic check fails
    and acts."""
    window = SourceWindow(ArmStats(samples=base + 300), ArmStats(samples=cand + 300))

    decision = run(window, traffic=traffic, step_index=step_index, gates=[])

    verdict = traffic_of(decision)
    if verdict.verdict == "fail" and traffic.on_fail != "observe":
        assert decision.action == (Action.ROLLBACK if traffic.on_fail == "rollback" else Action.PAUSE)
    else:
        assert decision.action == Action.ADVANCE


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_a_with_heavy_units_fails_the_check_rarely_however_often_it_is_looked_at(seed):
    """Sequential validity under clustering: 200 A/A steps at 10%, each looked at every 15 s
    for an hour, with requests from units whose rates are heavy-tailed (so a unit is many
    requests of one arm) and outcomes reported for 90% of the requests; the check may fail at
    most a few times (its level at a step is far below 1%)."""
    rng = np.random.default_rng(seed)
    failures = 0
    for _ in range(200):
        rates = np.cumsum(rng.pareto(1.5, 5000) + 1)
        candidate_unit = rng.integers(0, 10_000, 5000) < 1000
        per_unit = np.zeros(5000, dtype=np.int64)
        reports = np.zeros(2, dtype=np.int64)
        for look in range(240):
            units = np.searchsorted(rates, rng.random(750) * rates[-1], side="right")
            np.add.at(per_unit, units, 1)
            is_cand = candidate_unit[units]
            reports += [rng.binomial((~is_cand).sum(), 0.9), rng.binomial(is_cand.sum(), 0.9)]
            if look % 8:
                continue
            arms = [per_unit[~candidate_unit], per_unit[candidate_unit]]
            window = SourceWindow(
                ArmStats(samples=int(reports[0])),
                ArmStats(samples=int(reports[1])),
                exposures=Exposures(
                    *(
                        ArmExposures(int(a.sum()), int((a > 0).sum()), int(a.sum()), int((a * a).sum()))
                        for a in arms
                    )
                ),
            )
            if traffic_of(run(window, gates=[], elapsed=15 * look)).verdict == "fail":
                failures += 1
                break
    assert failures <= 2


@given(
    st.integers(30, 100_000),
    st.integers(30, 100_000),
    st.floats(0, 1.5),
    st.floats(0, 1.5),
    st.floats(1, 300),
)
def test_a_shadow_steps_report_test_is_the_exposed_steps_with_the_shadow_as_candidate(
    base_exposures, shadow_exposures, base_rate, shadow_rate, clustering
):
    """One rule for both: the shadow step's verdict on reports is the one an exposed step of the
    same plan (the same share of alpha) gives the candidate on the same counts, and its share
    is never tested."""
    n_b, n_c = round(base_exposures * base_rate), round(shadow_exposures * shadow_rate)
    counts = exposures(base_exposures, shadow_exposures, clustering=clustering)
    exposed = traffic_of(
        run(
            SourceWindow(ArmStats(samples=n_b), ArmStats(samples=n_c), exposures=counts),
            plan=SHADOW_PLAN,
            step_index=1,
        )
    )
    shadow = traffic_of(
        run(
            SourceWindow(
                ArmStats(samples=n_b // 5), ArmStats(samples=n_c), exposures=counts, baseline_reports=n_b
            ),
            plan=SHADOW_PLAN,
        )
    )

    report_part = exposed.detail.split("; ", 1)[1]
    assert shadow.detail.split("; ", 1)[1] == report_part.replace("candidate", "shadow")
    assert shadow.candidate is None
    report_failed = "reports too few" in report_part or "reports at least" in report_part
    assert (shadow.verdict == "fail") == report_failed


@given(st.integers(300, 200_000), st.floats(0.01, 1), st.floats(0.5, 1), st.floats(1, 500))
def test_a_shadow_reporting_as_often_as_the_baseline_never_fails(total, ran, report_rate, clustering):
    """However few of the sample's calls the SDKs ran as shadows (``ran``), a shadow that reports
    each run as often as the baseline reports its calls never fails the check."""
    shadow_runs = max(30, round(total * 0.2 * ran))
    window = SourceWindow(
        ArmStats(samples=round(total * 0.2 * report_rate)),
        ArmStats(samples=round(shadow_runs * report_rate)),
        exposures=exposures(total, shadow_runs, clustering=clustering),
        baseline_reports=round(total * report_rate),
    )

    assert traffic_of(run(window, plan=SHADOW_PLAN)).verdict != "fail"
