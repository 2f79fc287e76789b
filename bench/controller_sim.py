"""Controller simulation: the real decision engine on simulated traffic, beside a Flagger-style
fixed-threshold rule on the same traffic model.

    python -m bench.controller_sim [--rollouts N] [--seed S] [--quick] [--workers W] [--scenarios …]
                                   [--late-scores [--late-delay S]]

Reference traffic (SPEC, "The controller"): 50 requests/s, 1% errors, lognormal latency (median
800 ms, sigma 0.5), one evaluation score per request ~ Normal(0.8, 0.15), cost ~ Normal($0.002,
$0.0005) per request; the default plan and gates, and the built-in traffic check (on_fail
pause); a tick every 15 s; at most 24 h per step. Requests come from 20,000 units whose request
rates are heavy-tailed (Pareto, shape 1.5: the busiest unit makes about 1% of all requests, the
median one a fifth of the mean); each unit has a random bucket, so its arm is fixed, as
hashing makes it. The server counts every request as an exposure of its arm (with the distinct
units and the per-bucket counts the traffic check reads); each exposure reports an outcome
unless its arm loses reports. Scenarios: A/A (candidate = baseline), four regressions of the
candidate: error rate 1% -> 2%, p95 latency +50% (every latency x1.5), eval score -0.10, a
broken prompt (error rate 1% -> 20%), and a candidate that loses 30% of its outcome reports.
Each tick's traffic is drawn as per-arm aggregates and added to the step's window; the engine
sees exactly what the ingest path and the exposure counts would give it.

With --late-scores, each request's score arrives as a late score 0 to --late-delay seconds (default
600) after the request, uniformly, and counts in the request's step (as it counts in the request's
minute); scores still on their way when a step advances are not in the next step's window. Only
promptramp's controller runs then.

The Flagger-style rule checks each 60 s interval's own figures against the same limits
(candidate error rate > baseline + 1 pt, p95 > 1.2 x baseline, score < baseline - 0.05, cost >
$0.05); 5 failed checks roll back; each step advances after 10 intervals (600 s).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rollouts import engine, stats  # noqa: E402
from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN  # noqa: E402

REQUESTS_PER_S = 50
TICK_S = 15
MAX_STEP_S = 86400
LATENCY_MEDIAN_MS = 800.0
LATENCY_SIGMA = 0.5
ERROR_RATE = 0.01
SCORE_MEAN, SCORE_SD = 0.8, 0.15
COST_MEAN, COST_SD = 0.002, 0.0005
SCORE_NAME = "helpfulness"
# Bucket indexes the simulated latencies can reach (1 ms .. ~18 min), as a dense array.
FIRST_BUCKET, BUCKETS = 0, 1400
START = datetime(2026, 1, 1, tzinfo=UTC)

FLAGGER_INTERVAL_S = 60
FLAGGER_ITERATIONS = 10
FLAGGER_THRESHOLD = 5


UNITS = 20_000
UNIT_RATE_SHAPE = 1.5  # Pareto shape of the units' request rates: a few units make many requests
BUCKETS_PER_ROLLOUT = 10_000


@dataclass(frozen=True)
class Traffic:
    error_rate: float = ERROR_RATE
    latency_scale: float = 1.0
    score_mean: float = SCORE_MEAN
    report_loss: float = 0.0  # the share of exposures whose outcome is never reported


BASELINE = Traffic()
LOSSY = Traffic(report_loss=0.10)
SCENARIOS = {  # name: (baseline, candidate)
    "A/A (no regression)": (BASELINE, Traffic()),
    "A/A, 10% reports lost": (LOSSY, LOSSY),
    "error rate 1% -> 2%": (BASELINE, Traffic(error_rate=0.02)),
    "p95 latency +50%": (BASELINE, Traffic(latency_scale=1.5)),
    "eval score -0.10": (BASELINE, Traffic(score_mean=SCORE_MEAN - 0.10)),
    "error rate 1% -> 20%": (BASELINE, Traffic(error_rate=0.20)),
    "reports lost 30%": (BASELINE, Traffic(report_loss=0.30)),
}
LOSS = "reports lost 30%"


@dataclass(frozen=True)
class Outcome:
    action: str  # rollback, succeed or pause
    percent: int  # the percent when it ended
    seconds: int  # time from start to the decision


class LateScores:
    """Scores on their way: each request's score arrives 0 to ``max_delay_s`` after the
    request, kept as score moments per tick of arrival in a ring."""

    def __init__(self, max_delay_s: float) -> None:
        self.max_delay_s = max_delay_s
        self.ring = np.zeros((math.ceil((TICK_S + max_delay_s) / TICK_S) + 1, 3))
        self.tick = 0

    def send(self, rng: np.random.Generator, scores: np.ndarray) -> None:
        """Scores of requests made during the current tick (at uniform times within it)."""
        arrival_s = rng.uniform(0, TICK_S, scores.size) + rng.uniform(0, self.max_delay_s, scores.size)
        ticks_ahead = np.maximum(np.ceil(arrival_s / TICK_S).astype(np.int64) - 1, 0)
        slot = (self.tick + ticks_ahead) % len(self.ring)
        size = len(self.ring)
        self.ring[:, 0] += np.bincount(slot, minlength=size)
        self.ring[:, 1] += np.bincount(slot, weights=scores, minlength=size)
        self.ring[:, 2] += np.bincount(slot, weights=np.square(scores), minlength=size)

    def arrived(self) -> np.ndarray:
        """The moments of the scores arrived by the end of the current tick; the next tick starts."""
        slot = self.tick % len(self.ring)
        moments = self.ring[slot].copy()
        self.ring[slot] = 0
        self.tick += 1
        return moments


class Window:
    """One arm's aggregates since the step started, kept as arrays for speed."""

    def __init__(self, late_delay_s: float | None = None) -> None:
        self.late = None if late_delay_s is None else LateScores(late_delay_s)
        self.samples = self.errors = 0
        self.latency = np.zeros(3)
        self.cost = np.zeros(3)
        self.score = np.zeros(3)
        self.histogram = np.zeros(BUCKETS, dtype=np.int64)

    def add(self, rng: np.random.Generator, traffic: Traffic, n: int) -> np.ndarray:
        """Add n requests; returns their latencies (ms)."""
        self.samples += n
        self.errors += int(rng.binomial(n, traffic.error_rate))
        median = LATENCY_MEDIAN_MS * traffic.latency_scale
        latencies = rng.lognormal(math.log(median), LATENCY_SIGMA, n)
        self.latency += _moments(latencies)
        self.cost += _moments(rng.normal(COST_MEAN, COST_SD, n))
        scores = rng.normal(traffic.score_mean, SCORE_SD, n)
        if self.late is None:
            self.score += _moments(scores)
        else:
            self.late.send(rng, scores)
            self.score += self.late.arrived()
        index = np.ceil(np.log(latencies) / stats.LOG_GAMMA).astype(np.int64) - FIRST_BUCKET
        index = np.clip(index, 0, BUCKETS - 1)
        self.histogram += np.bincount(index, minlength=BUCKETS)[:BUCKETS]
        return latencies

    def arm_stats(self) -> stats.ArmStats:
        filled = np.flatnonzero(self.histogram)
        buckets = zip((filled + FIRST_BUCKET).tolist(), self.histogram[filled].tolist(), strict=True)
        return stats.ArmStats(
            samples=self.samples,
            errors=self.errors,
            latency=stats.Moments(int(self.latency[0]), *self.latency[1:].tolist()),
            histogram=stats.Histogram(tuple(buckets)),
            cost=stats.Moments(int(self.cost[0]), *self.cost[1:].tolist()),
            scores=((SCORE_NAME, stats.Moments(int(self.score[0]), *self.score[1:].tolist())),),
        )


def _moments(values: np.ndarray) -> np.ndarray:
    return np.array([values.size, values.sum(), np.square(values).sum()])


def _split(rng: np.random.Generator, seconds: int, percent: int, rps: float) -> tuple[int, int]:
    total = int(rng.poisson(seconds * rps))
    candidate = int(rng.binomial(total, percent / 100))
    return total - candidate, candidate


class Units:
    """The units of one rollout: request rates and buckets (a fresh salt draws fresh buckets)."""

    def __init__(self, rng: np.random.Generator) -> None:
        rates = rng.pareto(UNIT_RATE_SHAPE, UNITS) + 1.0
        self.cumulative = np.cumsum(rates)
        self.bucket = rng.integers(0, BUCKETS_PER_ROLLOUT, UNITS)

    def requests(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The units making ``n`` requests, each drawn in proportion to its rate."""
        draws = rng.random(n) * self.cumulative[-1]
        return np.searchsorted(self.cumulative, draws, side="right")


class Exposed:
    """The server's exposure counts of a step: per arm, and per bucket, and the units seen."""

    def __init__(self) -> None:
        self.per_bucket = np.zeros(BUCKETS_PER_ROLLOUT, dtype=np.int64)
        self.seen = np.zeros(UNITS, dtype=bool)

    def add(self, units: np.ndarray, buckets: np.ndarray) -> None:
        self.per_bucket += np.bincount(buckets, minlength=BUCKETS_PER_ROLLOUT)
        self.seen[units] = True

    def exposures(self, threshold: int, unit_bucket: np.ndarray) -> stats.Exposures:
        def arm(per_bucket: np.ndarray, seen: np.ndarray) -> stats.ArmExposures:
            total = int(per_bucket.sum())
            return stats.ArmExposures(total, int(seen.sum()), total, int(np.dot(per_bucket, per_bucket)))

        candidate_units = unit_bucket < threshold
        return stats.Exposures(
            baseline=arm(self.per_bucket[threshold:], self.seen & ~candidate_units),
            candidate=arm(self.per_bucket[:threshold], self.seen & candidate_units),
        )


def run_engine(
    rng: np.random.Generator,
    baseline: Traffic,
    candidate: Traffic,
    rps: float,
    late_delay_s: float | None = None,
) -> Outcome:
    plan, gates = DEFAULT_PLAN, DEFAULT_GATES
    step_index, step_start, now = 0, 0, 0
    base, cand, exposed = Window(late_delay_s), Window(late_delay_s), Exposed()
    units = Units(rng)
    while True:
        percent = plan.steps[step_index].percent
        threshold = percent * 100
        now += TICK_S
        requests = units.requests(rng, int(rng.poisson(TICK_S * rps)))
        buckets = units.bucket[requests]
        exposed.add(requests, buckets)
        n_cand = int(np.count_nonzero(buckets < threshold))
        n_base = requests.size - n_cand
        base.add(rng, baseline, int(rng.binomial(n_base, 1 - baseline.report_loss)))
        cand.add(rng, candidate, int(rng.binomial(n_cand, 1 - candidate.report_loss)))
        window = engine.SourceWindow(
            base.arm_stats(), cand.arm_stats(), exposures=exposed.exposures(threshold, units.bucket)
        )
        decision = engine.decide(
            plan=plan,
            step_index=step_index,
            step_started_at=START + timedelta(seconds=step_start),
            now=START + timedelta(seconds=now),
            windows={"ingest": window},
            gates=gates,
        )
        if decision.action == engine.Action.ADVANCE:
            step_index, step_start = decision.step_index, now
            base, cand, exposed = Window(late_delay_s), Window(late_delay_s), Exposed()
        elif decision.action != engine.Action.HOLD:
            return Outcome(str(decision.action), percent, now)


def run_flagger(
    rng: np.random.Generator,
    baseline: Traffic,
    candidate: Traffic,
    rps: float,
    late_delay_s: float | None = None,
) -> Outcome:
    assert late_delay_s is None, "the Flagger-style rule reads scores in the request's event"
    failed, now = 0, 0
    for percent in (10, 25, 50):
        for _ in range(FLAGGER_ITERATIONS):
            now += FLAGGER_INTERVAL_S
            base, cand = Window(), Window()
            n_base, n_cand = _split(rng, FLAGGER_INTERVAL_S, percent, rps)
            n_cand = int(rng.binomial(n_cand, 1 - candidate.report_loss))
            n_base = int(rng.binomial(n_base, 1 - baseline.report_loss))
            base_latency = base.add(rng, baseline, n_base)
            cand_latency = cand.add(rng, candidate, n_cand)
            # Flagger counts a metric query that finds no data as a failed check.
            failed += min(n_base, n_cand) == 0 or any(
                (
                    cand.errors / n_cand > base.errors / n_base + 0.01,
                    np.quantile(cand_latency, 0.95) > 1.2 * np.quantile(base_latency, 0.95),
                    cand.score[1] / n_cand < base.score[1] / n_base - 0.05,
                    cand.cost[1] / n_cand > 0.05,
                )
            )
            if failed >= FLAGGER_THRESHOLD:
                return Outcome("rollback", percent, now)
    return Outcome("succeed", 100, now)


CONTROLLERS = {"promptramp": run_engine, "flagger-style": run_flagger}


def _run(job: tuple[int, str, str, int, float, float | None]) -> Outcome:
    seed, scenario, controller, index, rps, late_delay_s = job
    scenario_no = list(SCENARIOS).index(scenario)
    controller_no = list(CONTROLLERS).index(controller)
    rng = np.random.default_rng([seed, scenario_no, controller_no, index])
    return CONTROLLERS[controller](rng, *SCENARIOS[scenario], rps, late_delay_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000, help="rollouts per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100 rollouts per scenario")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rps", type=float, default=REQUESTS_PER_S, help="requests per second")
    parser.add_argument(
        "--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS), metavar="NAME"
    )
    parser.add_argument("--controllers", nargs="+", choices=list(CONTROLLERS), default=list(CONTROLLERS))
    parser.add_argument("--late-scores", action="store_true", help="scores arrive as late scores")
    parser.add_argument("--late-delay", type=float, default=600.0, help="a late score's largest delay (s)")
    args = parser.parse_args(argv)
    rollouts = 100 if args.quick else args.rollouts
    late_delay_s = args.late_delay if args.late_scores else None
    controllers = ["promptramp"] if args.late_scores else args.controllers
    began = time.monotonic()
    print(
        f"controller simulation: {rollouts} rollouts per scenario, seed {args.seed}, "
        f"{args.rps:g} req/s from {UNITS:,} units (Pareto {UNIT_RATE_SHAPE} request rates), "
        f"tick {TICK_S} s, default plan and gates, traffic check on_fail pause "
        f"(rollout alpha {engine.ROLLOUT_ALPHA}, beta {engine.BETA})"
        + ("" if late_delay_s is None else f", scores as late scores delayed 0-{late_delay_s:g} s")
    )
    header = (
        f"{'scenario':<22} {'controller':<14} {'rolled back':>11} {'before 50%':>10} "
        f"{'paused':>6} {'before 50%':>10} {'succeeded':>9} {'median time':>11}"
    )
    print(header)
    print("-" * len(header))
    bars = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for scenario in args.scenarios:
            for controller in controllers:
                jobs = [(args.seed, scenario, controller, i, args.rps, late_delay_s) for i in range(rollouts)]
                outcomes = list(pool.map(_run, jobs, chunksize=8))
                rolled = [o for o in outcomes if o.action == "rollback"]
                paused = [o for o in outcomes if o.action == "pause"]
                rolled_early = sum(o.percent < 50 for o in rolled)
                paused_early = sum(o.percent < 50 for o in paused)
                succeeded = sum(o.action == "succeed" for o in outcomes)
                median_min = statistics.median(o.seconds for o in outcomes) / 60
                print(
                    f"{scenario:<22} {controller:<14} {len(rolled):>11} {rolled_early:>10} "
                    f"{len(paused):>6} {paused_early:>10} {succeeded:>9} {median_min:>8.1f} min"
                )
                if controller != "promptramp":
                    continue
                if scenario.startswith("A/A"):
                    acted = len(rolled) + len(paused)
                    limit = rollouts // 100
                    bars.append(
                        (f"A/A: {acted} automatic actions (rollback or pause) <= {limit}", acted <= limit)
                    )
                elif scenario == LOSS:
                    share = paused_early / rollouts
                    bars.append((f"{scenario}: {share:.1%} paused before 50% >= 95%", share >= 0.95))
                else:
                    share = rolled_early / rollouts
                    bars.append((f"{scenario}: {share:.1%} rolled back before 50% >= 95%", share >= 0.95))
    print()
    for text, held in bars:
        print(f"{'PASS' if held else 'FAIL'}  {text}")
    print(f"\n{time.monotonic() - began:.0f} s on {args.workers} workers")


if __name__ == "__main__":
    main()
