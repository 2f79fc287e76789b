import json
import math
import random
import statistics
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollouts.stats import (
    ArmStats,
    Estimate,
    Histogram,
    Moments,
    arm_stats_sum,
    arm_summary,
    histogram_from_counts,
    histogram_from_json,
    histogram_merge,
    histogram_quantile,
    histogram_sum,
    latency_bucket_index,
    log_quantile_sparsity,
    mixture_halfwidth,
    quantile_estimate,
    sprt_log_likelihood_ratio,
)
from tests.factories import event_stats

latencies = st.floats(min_value=0.002, max_value=1e7, allow_nan=False)
latency_lists = st.lists(latencies, min_size=1, max_size=300)
quantiles = st.floats(min_value=0.0, max_value=1.0)


def histogram_of(values):
    return histogram_from_counts(Counter(latency_bucket_index(value) for value in values))


@given(latency_lists, quantiles)
def test_histogram_quantile_is_within_one_percent_of_the_exact_quantile(values, q):
    exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]

    estimate = histogram_quantile(histogram_of(values), q)

    assert abs(estimate - exact) <= 0.01 * exact


def test_bucket_index_is_ceil_of_log_base_1_02():
    assert latency_bucket_index(800) == 338
    assert latency_bucket_index(1.02**10 * 1.001) == 11
    assert latency_bucket_index(1) == 0


def test_zero_and_sub_microsecond_latencies_share_the_zero_bucket_valued_zero():
    hist = histogram_of([0.0, 0.0005, 0.001])

    assert len(hist.buckets) == 1
    assert histogram_quantile(hist, 1.0) == 0.0


def test_sub_millisecond_latency_keeps_one_percent_accuracy():
    value = histogram_quantile(histogram_of([0.37]), 0.5)

    assert value == pytest.approx(0.37, rel=0.01)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bucket_index_refuses_negative_and_non_finite_latency(bad):
    with pytest.raises(ValueError):
        latency_bucket_index(bad)


def test_quantile_of_empty_histogram_is_none():
    assert histogram_quantile(Histogram(), 0.5) is None


@given(latency_lists, latency_lists, latency_lists)
def test_histogram_merge_is_associative_and_commutative(a, b, c):
    ha, hb, hc = histogram_of(a), histogram_of(b), histogram_of(c)

    assert histogram_merge(histogram_merge(ha, hb), hc) == histogram_merge(ha, histogram_merge(hb, hc))
    assert histogram_merge(ha, hb) == histogram_merge(hb, ha)
    assert histogram_merge(ha, hb) == histogram_of(a + b)


@given(latency_lists)
def test_histogram_reads_back_from_its_stored_shape(values):
    hist = histogram_of(values)
    stored = json.dumps({str(index): count for index, count in hist.buckets})

    assert histogram_from_json(json.loads(stored)) == hist


def test_histogram_from_json_accepts_integer_keys():
    assert histogram_from_json({338: 2, "339": 1}) == Histogram(((338, 2), (339, 1)))


@pytest.mark.parametrize("bad", [{"x": 1}, {"3": -1}, {"3": 1.5}, [1, 2]])
def test_histogram_from_json_refuses_malformed_input(bad):
    with pytest.raises(ValueError):
        histogram_from_json(bad)


def test_arm_stats_of_events_give_the_api_figures():
    events = [
        event_stats(latency_ms=100, error=False, cost_usd=0.002, scores={"helpfulness": 0.9}),
        event_stats(latency_ms=200, error=True, cost_usd=0.004),
        event_stats(latency_ms=300, scores={"helpfulness": 0.7}),
        event_stats(error=True),
    ]

    summary = arm_summary(arm_stats_sum(events))

    assert summary == {
        "samples": 4,
        "errors": 2,
        "error_rate": 0.5,
        "latency_p50_ms": pytest.approx(200, rel=0.01),
        "latency_p95_ms": pytest.approx(300, rel=0.01),
        "latency_p99_ms": pytest.approx(300, rel=0.01),
        "cost_per_request": pytest.approx(0.003),
        "scores": {"helpfulness": pytest.approx(0.8)},
    }


def test_summary_of_an_arm_with_no_events_has_no_figures():
    summary = arm_summary(ArmStats())

    assert summary["samples"] == 0
    assert summary["error_rate"] is None
    assert summary["latency_p95_ms"] is None
    assert summary["cost_per_request"] is None
    assert summary["scores"] == {}


events = st.builds(
    event_stats,
    latency_ms=st.none() | latencies,
    error=st.booleans(),
    cost_usd=st.none() | st.floats(min_value=0, max_value=10),
    scores=st.dictionaries(st.sampled_from(["a", "b"]), st.floats(min_value=-1, max_value=1)),
)


@given(st.lists(events, max_size=20), st.lists(events, max_size=20))
def test_merging_per_minute_aggregates_counts_every_event_once(a, b):
    merged = arm_stats_sum([arm_stats_sum(a), arm_stats_sum(b)])

    assert merged.samples == len(a) + len(b)
    assert merged.errors == sum(e.errors for e in a + b)
    assert merged.histogram == histogram_sum(e.histogram for e in a + b)
    assert merged.cost.total == pytest.approx(sum(e.cost.total for e in a + b))
    assert merged.score("a").count == sum(e.score("a").count for e in a + b)
    assert arm_stats_sum([arm_stats_sum(b), arm_stats_sum(a)]) == merged


@given(st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=2, max_size=50))
def test_moments_give_the_sample_mean_and_variance(values):
    m = Moments(len(values), sum(values), sum(v * v for v in values))

    assert m.mean == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert m.variance == pytest.approx(statistics.variance(values), rel=1e-6, abs=1e-6)


def test_sprt_log_likelihood_ratio_is_symmetric_between_the_hypotheses():
    at_null = sprt_log_likelihood_ratio(Estimate(0.0, 0.1), 0.2)
    at_limit = sprt_log_likelihood_ratio(Estimate(0.2, 0.1), 0.2)

    assert at_null == pytest.approx(-2.0)
    assert at_limit == pytest.approx(2.0)
    assert sprt_log_likelihood_ratio(Estimate(0.1, 0.1), 0.2) == pytest.approx(0.0)


def _crossing_share(effect, regression, boundary, crosses_above, paths=2000):
    """Share of Gaussian random walks whose running SPRT statistic ever crosses `boundary`
    within 400 looks: the estimate of the effect after k observations of sd 1."""
    rng = random.Random(7)
    crossed = 0
    for _ in range(paths):
        total = 0.0
        for k in range(1, 401):
            total += rng.gauss(effect, 1.0)
            llr = sprt_log_likelihood_ratio(Estimate(total / k, 1 / math.sqrt(k)), regression)
            if (llr >= boundary) if crosses_above else (llr <= boundary):
                crossed += 1
                break
    return crossed / paths


def test_sprt_fails_a_null_effect_at_most_alpha_however_often_it_is_looked_at():
    alpha = 0.05

    assert _crossing_share(0.0, 0.3, math.log(1 / alpha), crosses_above=True) <= alpha


def test_sprt_passes_an_effect_as_large_as_the_limit_at_most_beta_of_the_time():
    beta = 0.05

    assert _crossing_share(0.3, 0.3, math.log(beta), crosses_above=False) <= beta


def test_mixture_confidence_sequence_covers_the_truth_at_every_look():
    rng = random.Random(11)
    alpha, misses, paths = 0.05, 0, 1000
    for _ in range(paths):
        total = 0.0
        for k in range(1, 301):
            total += rng.gauss(0.0, 1.0)
            if abs(total / k) > mixture_halfwidth(1 / math.sqrt(k), alpha, 0.2):
                misses += 1
                break

    assert misses / paths <= alpha


def test_mixture_halfwidth_narrows_as_evidence_grows():
    widths = [mixture_halfwidth(se, 0.01, 0.1) for se in (0.1, 0.03, 0.01, 0.001)]

    assert widths == sorted(widths, reverse=True)
    assert mixture_halfwidth(0.0, 0.01, 0.1) == 0.0


def _lognormal_histogram(rng, n, median=800.0, sigma=0.5):
    values = (median * math.exp(rng.gauss(0, sigma)) for _ in range(n))
    return histogram_from_counts(Counter(latency_bucket_index(v) for v in values))


def test_log_quantile_sparsity_matches_the_lognormal_density():
    hist = _lognormal_histogram(random.Random(3), 20000)
    z = statistics.NormalDist().inv_cdf(0.95)
    expected = 0.5 / statistics.NormalDist().pdf(z)

    assert log_quantile_sparsity(hist, 0.95) == pytest.approx(expected, rel=0.15)


def test_quantile_standard_error_matches_the_spread_of_repeated_estimates():
    rng = random.Random(5)
    reference = _lognormal_histogram(rng, 20000)
    sparsity = log_quantile_sparsity(reference, 0.95)
    estimates = [histogram_quantile(_lognormal_histogram(rng, 1000), 0.95) for _ in range(200)]

    claimed = quantile_estimate(_lognormal_histogram(rng, 1000), 0.95, sparsity).standard_error

    assert claimed == pytest.approx(statistics.stdev(estimates), rel=0.25)
