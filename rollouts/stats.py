"""Per-arm outcome statistics and the sequential tests the rollout controller runs on them.

Pure: no Django, no clock, no I/O. Everything here is a frozen dataclass or a function of them,
so ingest, the sources, the API and the decision engine share one definition of every figure.

An arm's outcomes over a window are an `ArmStats`: counts, sums, sums of squares and a latency
histogram, aggregates that merge by adding. Ingest keeps them per rollout, arm and minute
(outcomes.aggregation: the fields of a Redis hash, flushed into `outcomes.models.OutcomeMinute`
rows) and outcomes.selectors adds up a window's minutes in PostgreSQL; the langfuse and
prometheus sources build theirs from what their servers answer. The figures the API shows for an
arm are `arm_summary`.

Latency histogram
-----------------
Logarithmic buckets with growth factor ``GAMMA = 1.02``. A latency of ``ms`` milliseconds goes in
bucket ``ceil(ln(ms) / ln(1.02))`` (so bucket ``i`` holds ``(1.02**(i-1), 1.02**i]``), except that
every value at or below ``ZERO_LIMIT_MS`` (1 µs, including 0) goes in the dedicated bucket
``ZERO_BUCKET``. A bucket stands for the value ``2 * 1.02**i / 2.02``, which is within
``(GAMMA - 1) / (GAMMA + 1)`` = 0.990% of every value in the bucket, so every quantile read from a
histogram is within 0.99% of the exact one (the zero bucket stands for 0, within 1 µs). A minute's
histogram is stored as ``{"<bucket index>": count}`` (`histogram_from_json` reads it back);
merging is adding counts per index.

Sequential tests
----------------
A gate is checked every controller tick, so its verdict must stay valid however often it is
looked at. Both tests below are Ville's inequality applied to a likelihood-ratio martingale
(Ville 1939; Wald 1945; Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 2021): for a nonnegative martingale M with
M_0 = 1, P(sup_t M_t >= 1/a) <= a, whatever the looks.

* Relative gates use Wald's sequential probability ratio test between "no regression" (effect 0)
  and "a regression as large as the limit" (effect d). An estimated effect with standard error
  ``se`` behaves like Brownian motion in information time I = 1/se^2 (Jennison & Turnbull,
  "Group Sequential Methods", 2000, ch. 11), whose log-likelihood ratio is
  ``llr = (d * effect - d^2 / 2) / se^2``. Under "no regression" exp(llr) is a martingale, so
  ``llr >= ln(1/alpha)`` happens with probability <= alpha ever; under "regression of the limit's
  size" exp(-llr) is, so ``llr <= ln(beta)`` happens with probability <= beta ever.
* Absolute gates compare one arm with a fixed limit using the normal-mixture confidence sequence
  (Robbins 1970; the "mSPRT" of Johari, Pekelis & Walsh, "Always valid inference", 2017): the
  true value stays within ``estimate ± mixture_halfwidth(se, a, tau)`` at every look with
  probability >= 1 - a.

Standard errors are the usual large-sample ones, chosen never to be optimistic: an error rate's
variance is taken at least as large as it would be under the regression being tested (small
counts cannot make a candidate look certain), and a latency quantile's standard error comes from
the order-statistic argument (rank ~ Binomial(n, p)) with the density at the quantile estimated
on both arms' histograms pooled (Hall & Sheather 1988 bandwidth), plus the bucket rounding.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate
from statistics import NormalDist

# How far ahead of the server's clock an outcome may be stamped: ingest places an event within
# its arrival ± the event rules' ``ts_clamp_seconds`` (held equal to this by a test), so a window
# that ends now also holds the minutes of outcomes stamped ahead by callers' clocks.
CLOCK_ALLOWANCE = timedelta(minutes=5)

GAMMA = 1.02
LOG_GAMMA = math.log(GAMMA)
RELATIVE_ACCURACY = (GAMMA - 1) / (GAMMA + 1)
ZERO_LIMIT_MS = 0.001
ZERO_BUCKET = math.ceil(math.log(ZERO_LIMIT_MS) / LOG_GAMMA) - 1

# Variance of the rounding of a log-latency to its bucket (uniform over one bucket's width).
BUCKET_LOG_VARIANCE = LOG_GAMMA**2 / 12
# Fewest observations for any statistical verdict (the normal approximation's usual floor).
MIN_OBSERVATIONS = 30
# Fewest observations on each side of a quantile for its standard error to mean anything.
MIN_TAIL_OBSERVATIONS = 5

_NORMAL = NormalDist()


# --- latency histogram ---------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """Sparse bucket counts: ``(bucket index, count)`` pairs, indexes ascending, counts > 0."""

    buckets: tuple[tuple[int, int], ...] = ()

    @property
    def count(self) -> int:
        return sum(count for _, count in self.buckets)


def latency_bucket_index(ms: float) -> int:
    """The histogram bucket of a latency in milliseconds: ``ceil(ln(ms) / ln(1.02))``."""
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"latency must be a finite number >= 0, got {ms!r}")
    if ms <= ZERO_LIMIT_MS:
        return ZERO_BUCKET
    return math.ceil(math.log(ms) / LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The latency a bucket stands for: within 0.99% of every value in it (0 for the zero one)."""
    if index <= ZERO_BUCKET:
        return 0.0
    return 2 * math.pow(GAMMA, index) / (GAMMA + 1)


def histogram_from_counts(counts: Mapping[int, int]) -> Histogram:
    for index, count in counts.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"bucket index must be an integer, got {index!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"bucket {index} count must be an integer >= 0, got {count!r}")
    return Histogram(tuple(sorted((i, c) for i, c in counts.items() if c > 0)))


def histogram_merge(a: Histogram, b: Histogram) -> Histogram:
    return histogram_sum((a, b))


def histogram_sum(parts: Iterable[Histogram]) -> Histogram:
    counts: dict[int, int] = {}
    for part in parts:
        for index, count in part.buckets:
            counts[index] = counts.get(index, 0) + count
    return Histogram(tuple(sorted(counts.items())))


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field} must be an integer >= 0, got {value!r}")
    return value


def histogram_from_json(obj: object) -> Histogram:
    """Read ``{"<index>": count}``; keys may be strings or ints, counts must be ints."""
    if not isinstance(obj, Mapping):
        raise ValueError("histogram must be an object of bucket index to count")
    counts: dict[int, int] = {}
    for key, count in obj.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"histogram key {key!r} is not a bucket index") from None
        counts[index] = counts.get(index, 0) + _count(count, f"histogram[{key}]")
    return histogram_from_counts(counts)


def _rank(q: float, n: int) -> int:
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within [0, 1], got {q!r}")
    return min(n, max(1, math.ceil(q * n)))


def histogram_quantile(hist: Histogram, q: float) -> float | None:
    """The ``q`` quantile: the value of the bucket holding the ``ceil(q * n)``-th smallest."""
    n = hist.count
    if n == 0:
        return None
    cumulative = list(accumulate(count for _, count in hist.buckets))
    return bucket_value(hist.buckets[bisect_left(cumulative, _rank(q, n))][0])


def _log_quantile(hist: Histogram, cumulative: list[int], u: float) -> float:
    """ln of the ``u`` quantile, interpolated linearly in ln(ms) within its bucket."""
    target = u * cumulative[-1]
    position = min(bisect_left(cumulative, target), len(cumulative) - 1)
    index, count = hist.buckets[position]
    below = cumulative[position] - count
    return (index - 1 + (target - below) / count) * LOG_GAMMA


def log_quantile_sparsity(hist: Histogram, q: float) -> float:
    """d ln(Q(u)) / du at ``u = q``: the reciprocal density of ln(latency) at its q quantile.

    Estimated as the slope of the histogram's quantile function over ``q ± h`` with the
    Hall & Sheather (1988) bandwidth ``h = n^(-1/3) z^(2/3) (1.5 phi(z_q)^2 / (2 z_q^2 + 1))^(1/3)``
    (z = 1.96), the standard choice for the standard error of a sample quantile.
    """
    n = hist.count
    if n == 0:
        return 0.0
    z_q = _NORMAL.inv_cdf(min(max(q, 1e-6), 1 - 1e-6))
    shape = 1.5 * _NORMAL.pdf(z_q) ** 2 / (2 * z_q**2 + 1)
    h = math.cbrt(1.96**2 * shape / n)
    low, high = max(q - h, 0.5 / n), min(q + h, 1 - 0.5 / n)
    if high <= low:
        return 0.0
    cumulative = list(accumulate(count for _, count in hist.buckets))
    rise = _log_quantile(hist, cumulative, high) - _log_quantile(hist, cumulative, low)
    return rise / (high - low)


def quantile_observations_needed(q: float) -> int:
    """Fewest observations for a ``q`` quantile estimate: some on each side of it, and 30."""
    tail = min(q, 1 - q)
    return max(MIN_OBSERVATIONS, math.ceil(MIN_TAIL_OBSERVATIONS / tail) if tail > 0 else 0)


# --- per-arm aggregates --------------------------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of a measure: enough for its mean and variance."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def variance(self) -> float:
        """Sample variance (0 with fewer than two observations)."""
        if self.count < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total**2 / self.count) / (self.count - 1))


def _moments_sum(parts: Iterable[Moments]) -> Moments:
    count, total, total_sq = 0, 0.0, 0.0
    for part in parts:
        count += part.count
        total += part.total
        total_sq += part.total_sq
    return Moments(count, total, total_sq)


@dataclass(frozen=True)
class ArmStats:
    """Outcomes of one arm over a window: requests, errors, latency, cost, scores.

    ``samples`` counts requests; latency, cost and each score count only the events that carry
    them (their means are over those events). ``scores`` is ``(name, Moments)`` sorted by name.
    """

    samples: int = 0
    errors: int = 0
    latency: Moments = Moments()
    histogram: Histogram = Histogram()
    cost: Moments = Moments()
    scores: tuple[tuple[str, Moments], ...] = ()

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.samples if self.samples else None

    @property
    def cost_per_request(self) -> float | None:
        return self.cost.mean

    def latency_quantile(self, q: float) -> float | None:
        return histogram_quantile(self.histogram, q)

    def score(self, name: str) -> Moments:
        return dict(self.scores).get(name, Moments())

    def score_means(self) -> dict[str, float]:
        return {name: m.total / m.count for name, m in self.scores if m.count}


def arm_stats_sum(parts: Iterable[ArmStats]) -> ArmStats:
    """Merge aggregates (e.g. the per-minute rows of a window) into one."""
    parts = list(parts)
    score_parts: dict[str, list[Moments]] = {}
    for part in parts:
        for name, moments in part.scores:
            score_parts.setdefault(name, []).append(moments)
    return ArmStats(
        samples=sum(p.samples for p in parts),
        errors=sum(p.errors for p in parts),
        latency=_moments_sum(p.latency for p in parts),
        histogram=histogram_sum(p.histogram for p in parts),
        cost=_moments_sum(p.cost for p in parts),
        scores=tuple(sorted((n, _moments_sum(m)) for n, m in score_parts.items())),
    )


def arm_summary(stats: ArmStats) -> dict[str, object]:
    """The figures `GET /api/v1/rollouts/{id}` shows for an arm (``None`` where no data)."""

    def latency(q: float) -> float | None:
        value = stats.latency_quantile(q)
        return round(value, 2) if value is not None else None

    return {
        "samples": stats.samples,
        "errors": stats.errors,
        "error_rate": stats.error_rate,
        "latency_p50_ms": latency(0.50),
        "latency_p95_ms": latency(0.95),
        "latency_p99_ms": latency(0.99),
        "cost_per_request": stats.cost_per_request,
        "scores": stats.score_means(),
    }


# --- estimates and sequential tests --------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its standard error."""

    value: float
    standard_error: float


def mean_estimate(m: Moments) -> Estimate:
    """Mean and its standard error ``s / sqrt(n)``; needs ``m.count >= 1``."""
    return Estimate(m.total / m.count, math.sqrt(m.variance / m.count))


def proportion_variance(successes: int, n: int) -> float:
    """Bernoulli variance p(1-p) at the rate (successes + 0.5) / (n + 1), never 0."""
    p = (successes + 0.5) / (n + 1)
    return p * (1 - p)


def quantile_estimate(hist: Histogram, q: float, sparsity: float) -> Estimate:
    """A latency quantile (ms) and its standard error, given ``log_quantile_sparsity``.

    The rank of a sample quantile is Binomial(n, q), so ln of the quantile has standard error
    ``sparsity * sqrt(q (1 - q) / n)``; the bucket rounding adds ``BUCKET_LOG_VARIANCE``.
    Needs a non-empty histogram.
    """
    value = histogram_quantile(hist, q)
    if value is None:
        raise ValueError("no quantile of an empty histogram")
    log_se = math.sqrt(log_quantile_variance(hist.count, q, sparsity))
    return Estimate(value, value * log_se)


def log_quantile_variance(n: int, q: float, sparsity: float) -> float:
    return sparsity**2 * q * (1 - q) / n + BUCKET_LOG_VARIANCE


def sprt_log_likelihood_ratio(effect: Estimate, regression: float) -> float:
    """ln LR of "effect = regression" against "effect = 0" (Wald SPRT on the Brownian
    approximation): ``(d * x - d^2 / 2) / se^2`` with x the estimated effect, d the regression.

    Compare with ``ln(1/alpha)`` (fail) and ``ln(beta)`` (pass); see the module docstring.
    """
    variance = max(effect.standard_error**2, 1e-300)
    return (regression * effect.value - regression**2 / 2) / variance


def mixture_halfwidth(standard_error: float, alpha: float, scale: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence at level ``1 - alpha``.

    With information I = 1/se^2 and a N(0, scale^2) mixture over the true deviation, the mixture
    martingale crosses 1/alpha exactly when |estimate - truth| exceeds
    ``sqrt((se^2 + se^4 / scale^2) (2 ln(1/alpha) + ln(1 + scale^2 / se^2)))``
    (Howard et al. 2021, eq. 14; the bound is tightest when se is near ``scale``).
    """
    if standard_error == 0:
        return 0.0
    se2 = standard_error**2
    tau2 = scale**2
    return math.sqrt((se2 + se2 * se2 / tau2) * (2 * math.log(1 / alpha) + math.log1p(tau2 / se2)))


# --- exposures -----------------------------------------------------------------------------

# Standard error of a count read from a Redis HyperLogLog (16,384 registers: 1.04 / sqrt(16384)).
HLL_RELATIVE_ERROR = 0.0081


@dataclass(frozen=True)
class ArmExposures:
    """How often one arm was served over a window: ``count`` exposures (the server's resolves
    and renders, and the SDKs' local resolutions), ``units`` the distinct units among the
    server's (a HyperLogLog estimate; 0 when it saw none), and ``bucket_total`` /
    ``bucket_total_sq`` the sum and the sum of squares of the server's exposures per bucket.

    A unit's requests all fall in its bucket, so the per-bucket sums of squares bound the sum of
    squares of the requests per unit from above: `clustering` is how many times the variance
    of a count grows because a unit is many requests of one arm (1 when every request is a unit
    of its own)."""

    count: int = 0
    units: int = 0
    bucket_total: int = 0
    bucket_total_sq: int = 0

    @property
    def clustering(self) -> float:
        if self.bucket_total <= 0:
            return 1.0
        return max(1.0, self.bucket_total_sq / self.bucket_total)


@dataclass(frozen=True)
class Exposures:
    """Both arms' exposures over a step's window."""

    baseline: ArmExposures = ArmExposures()
    candidate: ArmExposures = ArmExposures()
