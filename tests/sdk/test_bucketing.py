from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from promptramp.bucketing import BUCKETS, bucket_of, threshold_of
from promptramp.snapshot import PromptVersion, Rollout

PERCENTS = st.integers(min_value=0, max_value=10_000).map(lambda basis_points: basis_points / 100)
BASELINE = PromptVersion("p", 1, "text", "one", None, None, {}, [])
CANDIDATE = PromptVersion("p", 2, "text", "two", None, None, {}, [])


def split(percent: float, salt: str = "p:1") -> Rollout:
    return Rollout(1, salt, threshold_of(percent), BASELINE, CANDIDATE)


def test_every_vector_is_reproduced(bucketing_vectors: list[dict[str, Any]]) -> None:
    wrong = [v for v in bucketing_vectors if bucket_of(v["salt"], v["unit"]) != v["bucket"]]

    assert len(bucketing_vectors) >= 300
    assert wrong == []


def test_percent_with_two_decimals_becomes_exact_basis_points() -> None:
    assert [threshold_of(p) for p in (0, 0.01, 0.29, 10, 12.34, 33.33, 57.7, 100)] == [
        0,
        1,
        29,
        1000,
        1234,
        3333,
        5770,
        10_000,
    ]


@given(salt=st.text(max_size=200), unit=st.text(min_size=1), low=PERCENTS, high=PERCENTS)
def test_raising_percent_keeps_existing_candidates(salt: str, unit: str, low: float, high: float) -> None:
    low, high = sorted((low, high))

    arm_at_low = split(low, salt).resolve(unit, None).arm
    arm_at_high = split(high, salt).resolve(unit, None).arm

    assert arm_at_low == "baseline" or arm_at_high == "candidate"


@given(salt=st.text(max_size=200), unit=st.text(min_size=1), percent=PERCENTS)
def test_same_unit_always_gets_the_same_arm_and_bucket(salt: str, unit: str, percent: float) -> None:
    first = split(percent, salt).resolve(unit, None)
    again = split(percent, salt).resolve(unit, None)

    assert (again.arm, again.bucket, again.version) == (first.arm, first.bucket, first.version)
    assert first.sticky and 0 <= first.bucket < BUCKETS  # type: ignore[operator]


def test_share_of_candidates_is_within_binomial_bounds_over_100000_units() -> None:
    units = [f"user-{i}" for i in range(100_000)]
    for percent in (1, 10, 25, 50, 90):
        rollout = split(percent, salt=f"share:{percent}")

        candidates = sum(rollout.resolve(unit, None).arm == "candidate" for unit in units)

        expected, share = len(units) * percent / 100, percent / 100
        five_sigma = 5 * (len(units) * share * (1 - share)) ** 0.5
        assert abs(candidates - expected) < five_sigma, percent


def test_buckets_are_uniform_by_chi_square() -> None:
    counts = [0] * 100
    for i in range(100_000):
        counts[bucket_of("uniform:1", f"session-{i}") // 100] += 1

    chi_square = sum((count - 1000) ** 2 / 1000 for count in counts)

    assert chi_square < 148.2  # 99 degrees of freedom, p = 0.001


def test_without_unit_the_bucket_is_random_and_not_sticky() -> None:
    results = [split(50).resolve(unit, None) for unit in [None, ""] * 200]

    assert not any(result.sticky for result in results)
    assert {result.arm for result in results} == {"baseline", "candidate"}
    assert len({result.bucket for result in results}) > 300
