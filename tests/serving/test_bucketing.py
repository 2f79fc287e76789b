import math
from collections import Counter
from decimal import Decimal

import mmh3
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.bucketing import BUCKETS, assign, bucket_of, default_salt, threshold_of
from tests.serving.vectors import bucketing_vectors

salts = st.text(max_size=200)
units = st.text(min_size=1, max_size=100)
percents = st.decimals(min_value=0, max_value=100, places=2)


def test_every_vector_gets_its_hash_and_bucket():
    for vector in bucketing_vectors():
        assert mmh3.hash(f"{vector['salt']}:{vector['unit']}", 0, signed=False) == vector["hash"]
        assert bucket_of(vector["salt"], vector["unit"]) == vector["bucket"], vector


def test_a_signed_hash_would_miss_vectors_so_the_vectors_guard_the_sign():
    wrong = [
        v for v in bucketing_vectors() if mmh3.hash(f"{v['salt']}:{v['unit']}", 0) % BUCKETS != v["bucket"]
    ]
    assert len(wrong) > 50


def test_default_salt_is_prompt_name_and_rollout_id():
    assert default_salt("support.answer", 7) == "support.answer:7"


def test_threshold_is_percent_in_basis_points():
    assert threshold_of(Decimal("10")) == 1000
    assert threshold_of(Decimal("12.34")) == 1234
    assert threshold_of(Decimal("0")) == 0
    assert threshold_of(Decimal("100")) == BUCKETS
    assert threshold_of(12.34) == 1234


@given(percent=percents)
def test_threshold_agrees_with_the_sdks_float_rounding(percent):
    assert threshold_of(percent) == round(float(percent) * 100)


@given(salt=salts, unit=units, low=percents, high=percents)
def test_raising_the_percent_keeps_every_candidate(salt, unit, low, high):
    low, high = min(low, high), max(low, high)
    before = assign(salt=salt, threshold=threshold_of(low), unit=unit, random_bucket=0)
    after = assign(salt=salt, threshold=threshold_of(high), unit=unit, random_bucket=0)
    if before.arm == "candidate":
        assert after.arm == "candidate"
    assert before.bucket == after.bucket


@given(salt=salts, unit=units, percent=percents, draws=st.lists(st.integers(0, BUCKETS - 1), min_size=2))
def test_a_unit_always_gets_the_same_arm_whatever_the_random_draw(salt, unit, percent, draws):
    answers = {assign(salt=salt, threshold=threshold_of(percent), unit=unit, random_bucket=d) for d in draws}
    assert len(answers) == 1
    assert next(iter(answers)).sticky is True


@given(salt=salts, percent=percents, draw=st.integers(0, BUCKETS - 1), unit=st.sampled_from([None, ""]))
def test_without_a_unit_the_random_draw_decides_and_is_not_sticky(salt, percent, draw, unit):
    answer = assign(salt=salt, threshold=threshold_of(percent), unit=unit, random_bucket=draw)
    assert answer.bucket == draw and answer.sticky is False
    assert (answer.arm == "candidate") == (draw < threshold_of(percent))


@settings(max_examples=10)
@given(salt=salts, percent=st.decimals(min_value=1, max_value=99, places=2))
def test_candidate_share_over_100000_units_is_within_binomial_bounds(salt, percent):
    n, p = 100_000, threshold_of(percent) / BUCKETS
    candidates = sum(
        assign(salt=salt, threshold=threshold_of(percent), unit=f"user-{i}", random_bucket=0).arm
        == "candidate"
        for i in range(n)
    )
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(candidates - n * p) < 5 * sigma  # a false alarm once in ~1.7 million draws


@settings(max_examples=5)
@given(salt=salts)
def test_buckets_of_100000_units_are_uniform_by_chi_square(salt):
    n, bins = 100_000, 100
    counts = Counter(bucket_of(salt, f"unit-{i}") * bins // BUCKETS for i in range(n))
    expected = n / bins
    chi2 = sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(bins))
    # 99 degrees of freedom: mean 99, sd 14; 180 has a p-value below 1e-6 (Wilson-Hilferty).
    assert chi2 < 180


def test_each_salt_draws_an_independent_candidate_set():
    units = [f"user-{i}" for i in range(20_000)]
    first = {u for u in units if bucket_of("answer:1", u) < 1000}
    second = {u for u in units if bucket_of("answer:2", u) < 1000}
    overlap = len(first & second) / len(first)
    assert 0.07 < overlap < 0.13  # about 10%, as for independent draws
