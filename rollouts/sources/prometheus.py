"""The `prometheus` source: per-arm figures from PromQL queries against a Prometheus HTTP API.

Each prometheus gate names a PromQL template per figure of its metric (`rollouts.promql`). For
each arm the source renders the templates with that arm's version, the window's length and its
end as the evaluation time, sends them to ``POST {url}/api/v1/query`` and adds up the series of
each answer:

* ``requests`` / ``errors`` become the arm's samples and errors (rounded: ``increase()``
  extrapolates to fractions);
* ``buckets`` (cumulative counts per ``le``) become the latency histogram. Each Prometheus bucket's
  count is spread evenly over its range, as ``histogram_quantile()`` assumes, onto the engine's
  2% log buckets; the +Inf bucket sits at the highest finite bound, as ``histogram_quantile()``
  reports it. So a latency quantile here is the one Prometheus would report (within 1%), and the
  engine's sequential test sees a histogram with the same counts rather than a bare quantile
  without its sample size. A quantile cannot be finer than the Prometheus buckets around it:
  give the histogram buckets close together near the latencies your gates watch.
* ``count`` / ``sum`` / ``sum_of_squares`` become the cost (or a score's) mean and variance.

The server is the one the gate names (``server``) in ``PROMPTRAMP_PROMETHEUS_SERVERS``, by
default ``PROMETHEUS_URL`` (credentials may be in the URL: they are sent as basic auth and never
shown). Requests go through `core.outbound` (no redirects, 1 MiB at most, a deadline on the
socket). The whole read is bounded by one time budget (`SOURCE_TIMEOUT_SECONDS`, within the
evaluation's deadline): a server that is unset, down, slow, or answers with an error or an
unexpected shape raises SourceUnavailable with the cause, in our words (never the reply's).
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from django.conf import settings

from core import outbound
from rollouts import promql
from rollouts.engine import SourceWindow
from rollouts.gate_metrics import ALL_SCORES, SCORE_PREFIX
from rollouts.plan import DEFAULT_SERVER, Gate
from rollouts.sources import SOURCE_TIMEOUT_SECONDS, RolloutArms, SourceUnavailable
from rollouts.stats import (
    GAMMA,
    ZERO_BUCKET,
    ZERO_LIMIT_MS,
    ArmStats,
    Histogram,
    histogram_from_counts,
    latency_bucket_index,
)

ARMS = ("baseline", "candidate")
SHADOW_ARMS = ("shadow_baseline", "shadow")

# One answer of /api/v1/query: each series' labels and value.
Series = list[tuple[dict[str, str], float]]


@dataclass(frozen=True)
class _Query:
    """One query to run for an arm, and what its answer is: ``figure`` of ``score`` (or None)."""

    figure: str
    template: str
    score: str | None = None
    by_score_label: bool = False


class PrometheusSource:
    def __init__(self, *, timeout_seconds: float = SOURCE_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    def read(
        self,
        *,
        rollout: RolloutArms,
        gates: Sequence[Gate],
        since: datetime,
        until: datetime,
        deadline: float,
    ) -> SourceWindow:
        deadline = min(deadline, time.monotonic() + self.timeout_seconds)
        arms = {}
        # In a shadow step the queries name the shadow arms: {arm} is shadow_baseline (the
        # baseline of the sample) and shadow, so metrics labelled by arm compare the same units.
        names = SHADOW_ARMS if rollout.shadow else ARMS
        for arm, name, version in zip(
            ARMS, names, (rollout.baseline_version, rollout.candidate_version), strict=True
        ):
            stats = ArmStats()
            for gate in gates:
                server = _server(gate)
                for query in _queries(gate):
                    promql_text = promql.render(
                        query.template,
                        prompt=rollout.prompt,
                        version=version,
                        arm=name,
                        window_seconds=(until - since).total_seconds(),
                        rollout=rollout.rollout_id,
                        score=query.score,
                    )
                    series = _run(server, promql_text, at=until, deadline=deadline)
                    stats = _with_figure(stats, query, series)
            arms[arm] = _with_samples(stats)
        return SourceWindow(baseline=arms["baseline"], candidate=arms["candidate"])


@dataclass(frozen=True)
class _Server:
    """Where to send a gate's queries: the query URL (no credentials), its basic auth header,
    and the server as it may be shown."""

    name: str
    query_url: str
    headers: dict[str, str]
    shown: str


def _server(gate: Gate) -> _Server:
    name = gate.server or DEFAULT_SERVER
    url = str(
        settings.PROMETHEUS_URL
        if name == DEFAULT_SERVER
        else settings.PROMPTRAMP_PROMETHEUS_SERVERS.get(name, "")
    )
    if not url:
        setting = "PROMETHEUS_URL" if name == DEFAULT_SERVER else "PROMPTRAMP_PROMETHEUS_SERVERS"
        raise SourceUnavailable(f"Prometheus server {name!r} is not configured: set {setting}")
    parts = urlsplit(url)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    host = parts.netloc.rpartition("@")[2]
    query_url = urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/api/v1/query", parts.query, ""))
    return _Server(name, query_url, headers, f"{name} ({outbound.safe_url(url)})")


def _queries(gate: Gate) -> list[_Query]:
    try:
        templates = promql.query_templates(gate.metric, gate.query)
    except ValueError as error:
        raise SourceUnavailable(f"the {gate.metric} gate's query: {error}") from None
    if gate.metric == ALL_SCORES:
        return [_Query(f, t, by_score_label=True) for f, t in templates.items()]
    if gate.metric.startswith(SCORE_PREFIX):
        name = gate.metric.removeprefix(SCORE_PREFIX)
        return [_Query(f, t, score=name) for f, t in templates.items()]
    return [_Query(f, t) for f, t in templates.items()]


def _run(server: _Server, query: str, *, at: datetime, deadline: float) -> Series:
    """One instant query: POST /api/v1/query. Raises SourceUnavailable."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise SourceUnavailable(f"Prometheus server {server.shown} answered too slowly (time budget spent)")
    form = {"query": query, "time": f"{at.timestamp():.3f}", "timeout": f"{remaining:.3f}"}
    try:
        reply = outbound.post(
            server.query_url, urlencode(form).encode(), server.headers, deadline_seconds=remaining
        )
    except outbound.OutboundError as error:
        raise SourceUnavailable(f"Prometheus server {server.name}: {error}") from None
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "success":
        raise SourceUnavailable(
            f"Prometheus server {server.shown} answered HTTP {reply.status} to {query!r} without a result"
        )
    return _series(body.get("data"), query)


def _series(data: object, query: str) -> Series:
    """The (labels, value) pairs of a vector or scalar result."""
    try:
        if not isinstance(data, dict):
            raise TypeError("no data")
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [({}, _number(result[1]))]
        if kind != "vector":
            raise SourceUnavailable(
                f"{query!r} gave a {kind}; a gate's query must give an instant vector or a scalar"
            )
        return [(dict(item["metric"]), _number(item["value"][1])) for item in result]
    except (KeyError, IndexError, TypeError, ValueError):
        raise SourceUnavailable(f"Prometheus answered {query!r} with an unexpected shape") from None


def _number(text: object) -> float:
    if not isinstance(text, str):
        raise ValueError(f"sample value {text!r} is not a string")
    return float(text)


# --- figures into ArmStats ------------------------------------------------------------------


def _total(series: Series, what: str) -> float:
    """The series added up: a finite number, >= 0 unless it is a sum (scores may be negative)."""
    total = math.fsum(value for _, value in series)
    if not math.isfinite(total) or (total < 0 and what != "sum"):
        raise SourceUnavailable(f"{what} came back as {total}; expected a finite number >= 0")
    return total


def _with_figure(stats: ArmStats, query: _Query, series: Series) -> ArmStats:
    if query.figure in ("requests", "errors"):
        count = round(_total(series, query.figure))
        return replace(stats, samples=count) if query.figure == "requests" else replace(stats, errors=count)
    if query.figure in promql.BUCKET_FIGURES:
        return replace(stats, histogram=histogram_from_buckets(series, promql.BUCKET_FIGURES[query.figure]))
    if query.by_score_label:
        parts: dict[str, Series] = {}
        for labels, value in series:
            if "score" not in labels:
                raise SourceUnavailable("a score:* gate's queries must give series labelled score")
            parts.setdefault(labels["score"], []).append((labels, value))
        for name, part in sorted(parts.items()):
            stats = _with_moment(stats, query.figure, part, score=name)
        return stats
    return _with_moment(stats, query.figure, series, score=query.score)


def _with_moment(stats: ArmStats, figure: str, series: Series, *, score: str | None) -> ArmStats:
    value = _total(series, figure)
    old = stats.cost if score is None else stats.score(score)
    if figure == "count":
        new = replace(old, count=round(value))
    elif figure == "sum":
        new = replace(old, total=value)
    else:
        new = replace(old, total_sq=value)
    if score is None:
        return replace(stats, cost=new)
    others = tuple((name, m) for name, m in stats.scores if name != score)
    return replace(stats, scores=tuple(sorted((*others, (score, new)))))


def _with_samples(stats: ArmStats) -> ArmStats:
    """An arm's samples are its requests or, without a requests query, the most observations any
    figure counts; its errors are at most its samples (the two counters are read a moment apart)."""
    counts = [stats.histogram.count, stats.cost.count, *(m.count for _, m in stats.scores)]
    samples = stats.samples or max(counts)
    return replace(stats, samples=samples, errors=min(stats.errors, samples))


def histogram_from_buckets(series: Series, ms_per_unit: float) -> Histogram:
    """A latency histogram from a Prometheus histogram's cumulative ``le`` bucket counts.

    Series with the same ``le`` are added; counts are made monotonic (as Prometheus does) and
    rounded; each bucket's count is spread evenly over ``(previous le, le]``, the +Inf bucket's
    put at the highest finite bound.
    """
    cumulative: dict[float, float] = {}
    for labels, value in series:
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError):
            raise SourceUnavailable("a buckets query must give series labelled le=<number>") from None
        if math.isnan(bound) or not math.isfinite(value):
            raise SourceUnavailable(f"bucket le={labels['le']} came back as {value}")
        cumulative[bound] = cumulative.get(bound, 0.0) + value
    finite = [bound for bound in cumulative if math.isfinite(bound)]
    counts: dict[int, int] = {}
    running, below, previous = 0.0, 0, 0.0
    for bound in sorted(cumulative):
        running = max(running, cumulative[bound])
        in_bucket, below = round(running) - below, round(running)
        if math.isfinite(bound):
            upper = max(0.0, bound * ms_per_unit)
            _spread(counts, previous, upper, in_bucket)
            previous = upper
        elif in_bucket and not finite:
            raise SourceUnavailable("a buckets query gave only the +Inf bucket: no latency to read")
        elif in_bucket:
            _add(counts, latency_bucket_index(max(0.0, max(finite) * ms_per_unit)), in_bucket)
    return histogram_from_counts(counts)


def _add(counts: dict[int, int], index: int, count: int) -> None:
    if count:
        counts[index] = counts.get(index, 0) + count


def _spread(counts: dict[int, int], low: float, high: float, count: int) -> None:
    """Spread ``count`` observations evenly over ``(low, high]`` ms onto the log buckets."""
    if count <= 0:
        return
    if high <= low:
        _add(counts, latency_bucket_index(high), count)
        return
    placed = 0
    for index, edge in _bucket_edges(low, high):
        share = round(count * (edge - low) / (high - low))
        _add(counts, index, share - placed)
        placed = share


def _bucket_edges(low: float, high: float) -> Iterable[tuple[int, float]]:
    """The log buckets overlapping ``(low, high]`` ms, each with its upper edge (the last's is
    ``high``). Bucket ``i`` holds ``(GAMMA**(i-1), GAMMA**i]``, the zero bucket ``[0, 1 µs]``."""
    index, last = latency_bucket_index(low), latency_bucket_index(high)
    while index < last:
        yield index, ZERO_LIMIT_MS if index == ZERO_BUCKET else GAMMA**index
        index += 1
    yield last, high
