"""Per-arm charts of the live page: buckets over time and the geometry of each chart."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rollouts.charts import (
    HEIGHT,
    LEFT,
    MAX_POINTS,
    PLOT_BOTTOM,
    PLOT_RIGHT,
    TOP,
    WIDTH,
    chart_buckets,
    chart_build,
)
from rollouts.stats import arm_stats_sum
from tests.factories import event_stats

START = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def minute_of(arm: str, index: int, count: int, *, latency: float = 800.0, error_every: int = 0) -> tuple:
    stats = arm_stats_sum(
        event_stats(latency_ms=latency + i, error=bool(error_every) and i % error_every == 0, cost_usd=0.002)
        for i in range(count)
    )
    return (START + index * MINUTE, arm, stats)


def test_buckets_cover_the_window_in_whole_minutes_and_merge_each_arm():
    series = [minute_of("baseline", 0, 9), minute_of("candidate", 0, 1), minute_of("baseline", 2, 9)]

    buckets = chart_buckets(
        series, since=START + timedelta(seconds=20), until=START + timedelta(minutes=2, seconds=5)
    )

    assert (buckets.since, buckets.until, buckets.minutes) == (START, START + 3 * MINUTE, 1)
    assert [sorted(b.arms) for b in buckets.items] == [["baseline", "candidate"], [], ["baseline"]]
    assert buckets.items[0].arms["baseline"].samples == 9


def test_a_long_window_is_merged_into_at_most_max_points_buckets():
    series = [minute_of("baseline", i, 2) for i in range(600)]

    buckets = chart_buckets(series, since=START, until=START + 600 * MINUTE)

    assert buckets.minutes == 5 and len(buckets.items) == MAX_POINTS
    assert buckets.items[0].arms["baseline"].samples == 10


@given(
    counts=st.lists(st.integers(0, 50), min_size=1, max_size=400),
    width=st.integers(1, 3000),
    max_points=st.integers(1, 200),
)
def test_buckets_keep_every_outcome_of_the_window_and_no_more_than_max_points(counts, width, max_points):
    series = [minute_of("candidate", i, n) for i, n in enumerate(counts) if n]

    buckets = chart_buckets(series, since=START, until=START + width * MINUTE, max_points=max_points)

    assert len(buckets.items) <= max_points
    kept = sum(b.arms["candidate"].samples for b in buckets.items if "candidate" in b.arms)
    assert kept == sum(counts[:width])


@given(
    values=st.lists(st.none() | st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=150),
    metric=st.sampled_from(["requests", "latency_p95_ms", "error_rate", "cost_per_request", "score:tone"]),
    limit=st.none() | st.floats(0, 1e6),
)
def test_every_line_dot_and_tick_stays_inside_the_chart(values, metric, limit):
    series = []
    for i, value in enumerate(values):
        if value is not None:
            scores = {"tone": value / 1e6} if metric.startswith("score:") else None
            series.append(
                (
                    START + i * MINUTE,
                    "candidate",
                    event_stats(latency_ms=value, cost_usd=value / 1e6, scores=scores),
                )
            )
    buckets = chart_buckets(series, since=START, until=START + len(values) * MINUTE)

    chart = chart_build(metric, buckets, limit=limit, markers=[(START + MINUTE, "25%")])

    assert chart.has_data == any(v is not None for v in values)
    for line in chart.lines:
        for x, y in line.dots:
            assert LEFT <= x <= PLOT_RIGHT and TOP <= y <= PLOT_BOTTOM
        for step in line.path.split():
            x, y = (float(part) for part in step[1:].split(","))
            assert LEFT <= x <= PLOT_RIGHT and TOP <= y <= PLOT_BOTTOM
    assert all(TOP <= tick.at <= PLOT_BOTTOM for tick in chart.y_ticks)
    assert all(LEFT <= tick.at <= PLOT_RIGHT for tick in chart.x_ticks)
    assert 0 <= LEFT < PLOT_RIGHT <= WIDTH and 0 <= TOP < PLOT_BOTTOM <= HEIGHT


def test_a_gap_in_an_arm_breaks_its_line_and_a_lone_point_gets_a_dot():
    series = [minute_of("candidate", 0, 5), minute_of("candidate", 1, 5), minute_of("candidate", 3, 5)]
    buckets = chart_buckets(series, since=START, until=START + 4 * MINUTE)

    (line,) = chart_build("error_rate", buckets, arms=["candidate"]).lines

    assert [step[0] for step in line.path.split()] == ["M", "L", "M"]
    assert len(line.dots) == 3


def test_requests_leave_out_the_bucket_still_filling_up():
    series = [minute_of("baseline", 0, 90), minute_of("baseline", 1, 30)]
    buckets = chart_buckets(series, since=START, until=START + timedelta(minutes=1, seconds=20))

    chart = chart_build("requests", buckets, complete_until=START + timedelta(minutes=1, seconds=20))
    errors = chart_build("error_rate", buckets, complete_until=START + timedelta(minutes=1, seconds=20))

    baseline = chart.lines[0]
    assert baseline.path.count("L") == 0 and baseline.latest == "90"
    assert errors.lines[0].path.count("L") == 1


def test_an_absolute_limit_near_the_data_is_drawn_and_one_far_away_is_not():
    buckets = chart_buckets([minute_of("candidate", 0, 50)], since=START, until=START + MINUTE)

    near = chart_build("latency_p95_ms", buckets, limit=1000.0)
    far = chart_build("latency_p95_ms", buckets, limit=100_000.0)

    assert near.limit is not None and near.limit.label == "1,000 ms"
    assert far.limit is None
