"""Per-arm charts of a rollout's metrics over time, as the geometry of an inline SVG.

Pure: no Django. `chart_buckets` merges the per-minute outcome rows of a rollout
(`rollouts.sources.OutcomeStore.arm_series`) into at most ``MAX_POINTS`` buckets of whole minutes. The
aggregates merge exactly, so a bucket's p95 is the p95 of all its outcomes, not a mean of
per-minute p95s. `chart_build` turns one metric of those buckets into a line per arm, axis ticks,
the gate's limit and markers of the rollout's transitions, in the SVG's own coordinates
(``WIDTH`` x ``HEIGHT``); the template only draws them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rollouts.figures import REQUESTS, metric_text, metric_title, tick_text
from rollouts.gate_metrics import SCORE_PREFIX, metric_value
from rollouts.stats import ArmStats, arm_stats_sum

WIDTH, HEIGHT = 480, 180
LEFT, RIGHT, TOP, BOTTOM = 62, 10, 14, 24
PLOT_RIGHT, PLOT_BOTTOM = WIDTH - RIGHT, HEIGHT - BOTTOM
BOX = {"width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "right": PLOT_RIGHT, "bottom": PLOT_BOTTOM}
MAX_POINTS = 120
# Each point gets a dot up to this many points per line; beyond, only points standing alone.
MAX_DOTS = 60
ARMS = ("baseline", "candidate")
ARM_NAMES = {"shadow_baseline": "baseline (shadow sample)"}  # an arm's name where it is not its key
MINUTE = timedelta(minutes=1)
X_TICK_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_X_TICKS = 6
Y_TICKS = 4
# The smallest y range shown, so that a flat line sits low instead of filling the chart.
MIN_RANGE = {REQUESTS: 10.0, "error_rate": 0.01, "cost_per_request": 0.001}
MIN_RANGE_LATENCY_MS = 10.0
MIN_RANGE_SCORE = 0.1


@dataclass(frozen=True)
class Bucket:
    start: datetime
    arms: Mapping[str, ArmStats]
    """The arms with outcomes in the bucket."""


@dataclass(frozen=True)
class Buckets:
    since: datetime
    until: datetime
    minutes: int
    """The width of each bucket."""
    items: tuple[Bucket, ...]


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _ceil_minute(moment: datetime) -> datetime:
    floor = _floor_minute(moment)
    return floor if floor == moment else floor + MINUTE


def chart_buckets(
    series: Iterable[tuple[datetime, str, ArmStats]],
    *,
    since: datetime,
    until: datetime,
    max_points: int = MAX_POINTS,
) -> Buckets:
    """Every bucket from ``since`` to ``until`` (whole minutes, the last one partly in the future
    when ``until`` is not on a minute), each with the merged outcomes of its minutes per arm.
    Rows outside the buckets are left out."""
    start = _floor_minute(since)
    window_end = max(_ceil_minute(until), start + MINUTE)
    span = (window_end - start) // MINUTE
    width = max(1, math.ceil(span / max_points))
    count = math.ceil(span / width)
    end = start + count * width * MINUTE  # the last bucket may reach past the window
    parts: dict[int, dict[str, list[ArmStats]]] = {}
    for minute, arm, stats in series:
        if start <= minute < window_end:
            parts.setdefault((minute - start) // (width * MINUTE), {}).setdefault(arm, []).append(stats)
    items = tuple(
        Bucket(
            start + i * width * MINUTE,
            {arm: arm_stats_sum(minutes) for arm, minutes in parts.get(i, {}).items()},
        )
        for i in range(count)
    )
    return Buckets(since=start, until=end, minutes=width, items=items)


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Line:
    arm: str
    path: str
    name: str
    dots: tuple[tuple[float, float], ...]
    latest: str
    """The last bucket's value, with its unit (— when the arm has no data)."""


@dataclass(frozen=True)
class Chart:
    metric: str
    title: str
    lines: tuple[Line, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    markers: tuple[Tick, ...]
    limit: Tick | None
    """The gate's limit as a horizontal line, when it is within sight of the data."""
    limit_text: str
    has_data: bool
    bucket_minutes: int

    @property
    def box(self) -> dict[str, int]:
        """The SVG's size and its plot area (where the axes are)."""
        return BOX


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``raw`` (> 0)."""
    exponent = math.floor(math.log10(raw))
    base = 10.0**exponent
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * base * (1 + 1e-9):
            return factor * base
    return 10.0 * base


def _min_range(metric: str) -> float:
    if metric.startswith(SCORE_PREFIX):
        return MIN_RANGE_SCORE
    return MIN_RANGE.get(metric, MIN_RANGE_LATENCY_MS)


def _y_domain(metric: str, values: Sequence[float], limit: float | None) -> tuple[float, float, float]:
    """(low, high, tick step) of the y axis: from 0 except for scores, the limit included when
    it is near the data, rounded out to whole ticks."""
    low, high = min(values), max(values)
    if limit is not None:
        reach = max(high - low, abs(high) * 0.5)
        if low - reach <= limit <= high + reach:
            low, high = min(low, limit), max(high, limit)
    if not metric.startswith(SCORE_PREFIX):
        low = min(0.0, low)
    if high - low < _min_range(metric):
        high = low + _min_range(metric)
    step = nice_step((high - low) / Y_TICKS)
    floor_low = math.floor(low / step + 1e-9) * step
    low = max(0.0, floor_low) if low >= 0 else floor_low
    high = math.ceil(high / step - 1e-9) * step
    return low, high, step


def _x_ticks(since: datetime, until: datetime, x_of: Callable[[datetime], float]) -> tuple[Tick, ...]:
    span = (until - since) / MINUTE
    interval = next((m for m in X_TICK_MINUTES if span / m <= MAX_X_TICKS), X_TICK_MINUTES[-1])
    midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
    first = math.ceil((since - midnight) / (interval * MINUTE))
    ticks = []
    moment = midnight + first * interval * MINUTE
    while moment <= until:
        ticks.append(Tick(x_of(moment), f"{moment:%H:%M}"))
        moment += interval * MINUTE
    return tuple(ticks)


def chart_build(
    metric: str,
    buckets: Buckets,
    *,
    limit: float | None = None,
    limit_text: str = "",
    markers: Sequence[tuple[datetime, str]] = (),
    arms: Sequence[str] = ARMS,
    complete_until: datetime | None = None,
) -> Chart:
    """One metric of the buckets as a chart: a line per arm (broken where an arm has no data;
    ``requests`` per minute of the bucket), y from 0 (scores: around the data), the ``limit``
    of an absolute gate, and ``markers`` (time, label) of the transitions in the window.

    Requests are counted in whole buckets only: one ending after ``complete_until`` (now, for a
    rollout still running) is still filling up and left out, so the line does not dip at its
    end. Rates and means of a bucket in progress are shown: they do not depend on its length."""
    span_s = (buckets.until - buckets.since).total_seconds()

    def x_of(moment: datetime) -> float:
        return round(LEFT + (moment - buckets.since).total_seconds() / span_s * (PLOT_RIGHT - LEFT), 1)

    half = buckets.minutes * MINUTE / 2
    points: dict[str, list[tuple[float, float] | None]] = {arm: [] for arm in arms}
    for bucket in buckets.items:
        filling = complete_until is not None and bucket.start + 2 * half > complete_until
        for arm in arms:
            stats = bucket.arms.get(arm)
            value = None
            if stats is not None and stats.samples and metric != REQUESTS:
                value = metric_value(metric, stats)
            elif stats is not None and stats.samples and not filling:
                value = stats.samples / buckets.minutes
            points[arm].append(None if value is None else (x_of(bucket.start + half), value))
    values = [p[1] for series in points.values() for p in series if p is not None]
    title = metric_title(metric) + (f" (per {buckets.minutes} min)" if buckets.minutes > 1 else "")
    x_ticks = _x_ticks(buckets.since, buckets.until, x_of)
    if not values:
        return Chart(metric, title, (), (), x_ticks, (), None, limit_text, False, buckets.minutes)
    low, high, step = _y_domain(metric, values, limit)

    def y_of(value: float) -> float:
        return round(PLOT_BOTTOM - (value - low) / (high - low) * (PLOT_BOTTOM - TOP), 1)

    lines = []
    for arm, series in points.items():
        path, previous, dots = [], None, []
        every_dot = sum(point is not None for point in series) <= MAX_DOTS
        for i, point in enumerate(series):
            if point is not None:
                x, y = point[0], y_of(point[1])
                path.append(f"{'L' if previous is not None else 'M'}{x},{y}")
                following = series[i + 1] if i + 1 < len(series) else None
                if every_dot or (previous is None and following is None):
                    dots.append((x, y))
            previous = point
        latest = next((p[1] for p in reversed(series) if p is not None), None)
        lines.append(
            Line(arm, " ".join(path), ARM_NAMES.get(arm, arm), tuple(dots), metric_text(metric, latest))
        )
    levels = [low + i * step for i in range(round((high - low) / step) + 1)]
    y_ticks = tuple(Tick(y_of(level), tick_text(metric, level, step)) for level in levels)
    shown_limit = None
    if limit is not None and low <= limit <= high:
        shown_limit = Tick(y_of(limit), tick_text(metric, limit, step / 10))
    in_window = tuple(
        Tick(x_of(moment), label) for moment, label in markers if buckets.since <= moment <= buckets.until
    )
    return Chart(
        metric,
        title,
        tuple(lines),
        y_ticks,
        x_ticks,
        in_window,
        shown_limit,
        limit_text,
        True,
        buckets.minutes,
    )
