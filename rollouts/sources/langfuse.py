"""The `langfuse` source: per-version figures from the generations a Langfuse server holds.

Read through the langfuse SDK's public API client (`langfuse.api.LangfuseAPI`, what
``Langfuse().api`` is, without the tracing machinery of the full client):

* the generations (``GET /api/public/v2/observations``, type ``GENERATION``) linked to the
  rollout's prompt at the arm's version (``promptName`` / ``promptVersion``) that started within
  the window: each is one sample; level ``ERROR`` is an error, ``latency`` goes into the latency
  histogram, ``totalCost`` is its cost;
* for score gates only, the numeric and boolean scores (``GET /api/public/v3/scores``; a boolean
  counts 1 or 0) attached to those generations or to their traces. A score counts once for each
  arm that has a generation it is attached to.

Langfuse does not know promptramp's buckets: an arm is its version. The server is the project
the gates name (``project``) in ``PROMPTRAMP_LANGFUSE_PROJECTS``, by default the one of
``LANGFUSE_BASE_URL`` (or ``LANGFUSE_HOST``; Langfuse Cloud by default, as in the SDK),
``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY``. Like every outbound call it follows no
redirect, reads at most 1 MiB of an answer (`_CappedTransport`) and its causes never carry a
reply's body or a key.

Bounded: at most `MAX_GENERATIONS` generations per arm (the first pages the API gives, newest
first) and the scores of the traces of at most `MAX_SCORED_TRACES` of them — a sample when the
window holds more — all within one time budget (`SOURCE_TIMEOUT_SECONDS`, within the
evaluation's deadline) and without retries. The SDK's requests each get what is left of it as
their timeout, and the whole read runs in a thread the evaluation waits for only until the
deadline (then its connection is closed): a server that drips bytes holds nothing longer. A
server that is not configured, down, slow, refuses the keys or answers an error raises
SourceUnavailable with the cause.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import httpx
import pydantic
from django.conf import settings
from langfuse.api import LangfuseAPI
from langfuse.api.commons.errors import AccessDeniedError, UnauthorizedError
from langfuse.api.commons.types.observation_level import ObservationLevel
from langfuse.api.commons.types.observation_v2 import ObservationV2
from langfuse.api.core.api_error import ApiError
from langfuse.api.core.request_options import RequestOptions
from langfuse.api.scores.types.score_v3 import ScoreV3

from core.outbound import MAX_REPLY_BYTES, safe_url
from rollouts.engine import SourceWindow
from rollouts.gate_metrics import SCORE_PREFIX
from rollouts.plan import DEFAULT_SERVER, Gate
from rollouts.sources import SOURCE_TIMEOUT_SECONDS, RolloutArms, SourceUnavailable
from rollouts.stats import ArmStats, Moments, histogram_from_counts, latency_bucket_index

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
OBSERVATION_FIELDS = "core,basic,usage,prompt,metrics"
OBSERVATIONS_PAGE = 250  # its answer fits MAX_REPLY_BYTES (the API's largest page is 1000)
SCORES_PAGE = 100  # the scores API's largest page
# Sized to fit the time budget: about 5 + 10 requests an arm at most.
TRACES_PER_SCORES_REQUEST = 100
MAX_GENERATIONS = 5_000
MAX_SCORED_TRACES = 1_000
NO_RETRIES: RequestOptions = {"max_retries": 0}

T = TypeVar("T")


@dataclass(frozen=True)
class Generation:
    """What one generation adds to its arm."""

    id: str
    trace_id: str | None
    error: bool
    latency_ms: float | None
    cost_usd: float | None


@dataclass(frozen=True)
class ScoreRequest:
    """Which scores the gates need: ``names`` None for every name (a ``score:*`` gate)."""

    names: frozenset[str] | None

    def wants(self, name: str) -> bool:
        return self.names is None or name in self.names

    @property
    def name_filter(self) -> str | None:
        """The API's comma-separated ``name`` filter (none when a name holds a comma)."""
        if self.names is None or any("," in name for name in self.names):
            return None
        return ",".join(sorted(self.names))


class LangfuseSource:
    def __init__(
        self,
        *,
        timeout_seconds: float = SOURCE_TIMEOUT_SECONDS,
        max_generations: int = MAX_GENERATIONS,
        max_scored_traces: int = MAX_SCORED_TRACES,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_generations = max_generations
        self.max_scored_traces = max_scored_traces

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
        project = next((gate.server for gate in gates if gate.server is not None), DEFAULT_SERVER)
        with httpx.Client(follow_redirects=False, transport=_CappedTransport()) as http:
            server = _Server(http, project=project, deadline=deadline)
            outcome: list[SourceWindow | SourceUnavailable] = []

            def work() -> None:
                try:
                    outcome.append(self._window(server, rollout, gates, since, until))
                except SourceUnavailable as unavailable:
                    outcome.append(unavailable)

            reader = threading.Thread(target=work, name="langfuse-source", daemon=True)
            reader.start()
            reader.join(max(deadline - time.monotonic(), 0.0))
            if not outcome:
                http.close()  # cuts the reader's connection: it ends without holding anything
                raise SourceUnavailable(f"Langfuse at {server.shown} did not answer within the deadline")
        if isinstance(outcome[0], SourceUnavailable):
            raise outcome[0]
        return outcome[0]

    def _window(
        self, server: _Server, rollout: RolloutArms, gates: Sequence[Gate], since: datetime, until: datetime
    ) -> SourceWindow:
        scores = _score_request(gates)
        arms = {}
        for arm, version in (
            ("baseline", rollout.baseline_version),
            ("candidate", rollout.candidate_version),
        ):
            generations = server.generations(
                rollout.prompt, version, since, until, limit=self.max_generations
            )
            values = (
                server.scores(generations, scores, max_traces=self.max_scored_traces)
                if scores is not None
                else []
            )
            arms[arm] = arm_stats_of(generations, values)
        return SourceWindow(baseline=arms["baseline"], candidate=arms["candidate"])


class ReplyTooLong(httpx.TransportError):
    """An answer longer than MAX_REPLY_BYTES: the rest is not read."""


class _CappedBody(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        read = 0
        for chunk in self.stream:
            read += len(chunk)
            if read > MAX_REPLY_BYTES:
                raise ReplyTooLong(f"the answer is longer than {MAX_REPLY_BYTES} bytes")
            yield chunk

    def close(self) -> None:
        self.stream.close()


class _CappedTransport(httpx.HTTPTransport):
    """httpx's transport reading at most MAX_REPLY_BYTES of an answer, like `core.outbound`."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedBody(cast(httpx.SyncByteStream, response.stream)),
            extensions=response.extensions,
            request=request,
        )


def _score_request(gates: Sequence[Gate]) -> ScoreRequest | None:
    names = {g.metric.removeprefix(SCORE_PREFIX) for g in gates if g.metric.startswith(SCORE_PREFIX)}
    if not names:
        return None
    return ScoreRequest(None if "*" in names else frozenset(names))


class _Server:
    """The Langfuse public API of a project (the LANGFUSE_* settings for `DEFAULT_SERVER`),
    within a deadline."""

    def __init__(self, http: httpx.Client, *, project: str, deadline: float) -> None:
        if project == DEFAULT_SERVER:
            base_url = settings.LANGFUSE_BASE_URL
            public_key, secret_key = settings.LANGFUSE_PUBLIC_KEY, settings.LANGFUSE_SECRET_KEY
            missing = [
                name
                for name, value in (("LANGFUSE_PUBLIC_KEY", public_key), ("LANGFUSE_SECRET_KEY", secret_key))
                if not value
            ]
            if missing:
                raise SourceUnavailable(
                    f"Langfuse is not configured: set {' and '.join(missing)} "
                    "(and LANGFUSE_BASE_URL for a self-hosted server)"
                )
        else:
            named = settings.PROMPTRAMP_LANGFUSE_PROJECTS.get(project)
            if named is None:
                raise SourceUnavailable(
                    f"Langfuse project {project!r} is not configured: set PROMPTRAMP_LANGFUSE_PROJECTS"
                )
            base_url, public_key, secret_key = named["base_url"], named["public_key"], named["secret_key"]
        self.base_url = str(base_url or DEFAULT_BASE_URL).rstrip("/")
        self.shown = safe_url(self.base_url)
        self.public_key, self.secret_key = public_key, secret_key
        self.http, self.deadline = http, deadline

    def call(self, what: str, method: Callable[[LangfuseAPI], Callable[..., T]], **params: Any) -> T:
        """One request of the SDK's client, answered within what is left of the time budget."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise SourceUnavailable(f"Langfuse at {self.shown} answered too slowly ({what})")
        api = LangfuseAPI(
            base_url=self.base_url,
            username=self.public_key,
            password=self.secret_key,
            x_langfuse_sdk_name="python",
            x_langfuse_public_key=self.public_key,
            httpx_client=self.http,
            timeout=remaining,
        )
        try:
            return method(api)(**params, request_options=NO_RETRIES)
        except httpx.TimeoutException:
            raise SourceUnavailable(
                f"Langfuse at {self.shown} did not answer within {remaining:.1f} s ({what})"
            ) from None
        except ReplyTooLong:
            raise SourceUnavailable(
                f"Langfuse at {self.shown} answered more than {MAX_REPLY_BYTES} bytes ({what})"
            ) from None
        except httpx.HTTPError as error:
            raise SourceUnavailable(
                f"Langfuse at {self.shown} is unreachable ({type(error).__name__})"
            ) from None
        except (UnauthorizedError, AccessDeniedError) as error:
            raise SourceUnavailable(
                f"Langfuse at {self.shown} refused the API keys (HTTP {error.status_code}): "
                "check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY"
            ) from None
        except ApiError as error:
            raise SourceUnavailable(
                f"Langfuse at {self.shown} answered HTTP {error.status_code} ({what})"
            ) from None
        except pydantic.ValidationError:
            raise SourceUnavailable(
                f"Langfuse at {self.shown} answered with an unexpected shape ({what})"
            ) from None

    def generations(
        self, prompt: str, version: int, since: datetime, until: datetime, *, limit: int
    ) -> list[Generation]:
        """The prompt version's generations that started in ``[since, until)``, page by page."""
        conditions = json.dumps(
            [
                {"type": "string", "column": "type", "operator": "=", "value": "GENERATION"},
                {"type": "string", "column": "promptName", "operator": "=", "value": prompt},
                {"type": "number", "column": "promptVersion", "operator": "=", "value": version},
                {"type": "datetime", "column": "startTime", "operator": ">=", "value": _iso(since)},
                {"type": "datetime", "column": "startTime", "operator": "<", "value": _iso(until)},
            ]
        )
        found: list[Generation] = []
        cursor: str | None = None
        while len(found) < limit:
            page = self.call(
                f"generations of {prompt} v{version}",
                lambda api: api.observations.get_many,
                fields=OBSERVATION_FIELDS,
                filter=conditions,
                limit=min(OBSERVATIONS_PAGE, limit - len(found)),
                cursor=cursor,
            )
            found.extend(_generation(observation) for observation in page.data)
            cursor = page.meta.cursor
            if not cursor or not page.data:
                break
        return found[:limit]

    def scores(
        self, generations: Sequence[Generation], wanted: ScoreRequest, *, max_traces: int
    ) -> list[tuple[str, float]]:
        """(name, value) of each numeric or boolean score attached to the generations (or their
        traces) of the first ``max_traces`` traces."""
        traces = list(dict.fromkeys(g.trace_id for g in generations if g.trace_id))[:max_traces]
        trace_ids = set(traces)
        observation_ids = {g.id for g in generations if g.trace_id in trace_ids}
        values: dict[str, tuple[str, float]] = {}
        for batch in _chunks(traces, TRACES_PER_SCORES_REQUEST):
            cursor: str | None = None
            while True:
                page = self.call(
                    "scores",
                    lambda api: api.scores.get_many,
                    trace_id=",".join(batch),
                    fields="subject",
                    data_type="NUMERIC,BOOLEAN",
                    name=wanted.name_filter,
                    limit=SCORES_PAGE,
                    cursor=cursor,
                )
                for score in page.data:
                    value = _score_value(score)
                    attached = _attached(score, trace_ids, observation_ids)
                    if value is not None and attached and wanted.wants(score.name):
                        values[score.id] = (score.name, value)
                cursor = page.meta.cursor
                if not cursor or not page.data:
                    break
        return list(values.values())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _generation(observation: ObservationV2) -> Generation:
    latency_s = observation.latency
    if latency_s is None and observation.end_time is not None:
        latency_s = (observation.end_time - observation.start_time).total_seconds()
    latency_ms = _finite(latency_s * 1000 if latency_s is not None else None)
    return Generation(
        id=observation.id,
        trace_id=observation.trace_id,
        error=observation.level == ObservationLevel.ERROR,
        latency_ms=latency_ms,
        cost_usd=_finite(observation.total_cost),
    )


def _score_value(score: ScoreV3) -> float | None:
    value = score.value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _attached(score: ScoreV3, trace_ids: set[str], observation_ids: set[str]) -> bool:
    subject = score.subject
    if subject is None:
        return False
    if subject.kind == "trace":
        return subject.id in trace_ids
    return subject.kind == "observation" and subject.id in observation_ids


def _moments(values: Sequence[float]) -> Moments:
    return Moments(len(values), math.fsum(values), math.fsum(v * v for v in values))


def arm_stats_of(generations: Sequence[Generation], scores: Sequence[tuple[str, float]]) -> ArmStats:
    """One arm's statistics from its generations and the scores attached to them."""
    latencies = [g.latency_ms for g in generations if g.latency_ms is not None]
    by_name: dict[str, list[float]] = {}
    for name, value in scores:
        by_name.setdefault(name, []).append(value)
    return ArmStats(
        samples=len(generations),
        errors=sum(g.error for g in generations),
        latency=_moments(latencies),
        histogram=histogram_from_counts(Counter(latency_bucket_index(ms) for ms in latencies)),
        cost=_moments([g.cost_usd for g in generations if g.cost_usd is not None]),
        scores=tuple(sorted((name, _moments(values)) for name, values in by_name.items())),
    )
