"""A rollout's plan and gates: their JSON, its validation and the defaults.

Pure: no Django. `Plan.from_json` and `parse_gates` read what a person or a program sent (and what
the database holds) and raise `ConfigError` naming the offending field; `DEFAULT_PLAN` and
`DEFAULT_GATES` are SPEC's. The controller (`rollouts.engine`) decides on these, and every page
and API that shows a plan or a gate reads it through them, so each default is said once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rollouts import promql
from rollouts.gate_metrics import ALL_SCORES, METRICS, SCORE_PREFIX

DEFAULT_MAX_DURATION_S = 86400
DEFAULT_APPROVAL = "auto"
DEFAULT_SOURCE = "ingest"
DEFAULT_ON_FAIL = "rollback"
SOURCES = (DEFAULT_SOURCE, "langfuse", "prometheus")
ABSOLUTE_RULES = ("max", "min")
RELATIVE_RULES = ("max_increase_pct", "max_increase_abs", "max_drop_abs")
RULES = (*ABSOLUTE_RULES, *RELATIVE_RULES)
ON_FAIL = (DEFAULT_ON_FAIL, "pause")
APPROVALS = (DEFAULT_APPROVAL, "manual")
MAX_GATES = 50
MAX_QUERY_LENGTH = 2000
DEFAULT_SERVER = "default"
STORED_URL_REFUSED = (
    "this gate carries a url, which promptramp no longer calls: "
    "name a server from PROMPTRAMP_PROMETHEUS_SERVERS instead"
)


class ConfigError(ValueError):
    """An invalid plan or gate; ``field`` names the offending field, e.g. ``gates[1].min``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _object(obj: object, field: str, allowed: set[str]) -> Mapping[str, object]:
    if not isinstance(obj, Mapping):
        raise ConfigError(field, "must be an object")
    for key in obj:
        if key not in allowed:
            raise ConfigError(f"{field}.{key}", "unknown field")
    return obj


def _int(data: Mapping[str, object], key: str, field: str, default: int | None = None) -> int:
    """An integer >= 0; absent or null is ``default`` (an error when there is none)."""
    value = data.get(key)
    value = default if value is None else value
    if value is None:
        raise ConfigError(f"{field}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{field}.{key}", f"must be an integer >= 0, got {value!r}")
    return value


def _choice(data: Mapping[str, object], key: str, field: str, options: Sequence[str]) -> str:
    """One of ``options``; absent or null is the first."""
    value = data.get(key)
    value = options[0] if value is None else value
    if value not in options:
        raise ConfigError(f"{field}.{key}", f"must be one of {', '.join(options)}; got {value!r}")
    return str(value)


# --- plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    percent: int
    min_duration_s: int
    min_samples: int
    max_duration_s: int = DEFAULT_MAX_DURATION_S
    approval: str = DEFAULT_APPROVAL
    shadow: bool = False
    """A shadow step: every caller is served the baseline, and the units of ``percent`` also
    get the candidate to run unseen (reported as arm ``shadow``)."""

    @property
    def exposed_percent(self) -> int:
        """The percent of callers served the candidate: none in a shadow step."""
        return 0 if self.shadow else self.percent

    @property
    def label(self) -> str:
        """The step as people read it: ``25%`` or ``shadow 10%``."""
        return f"shadow {self.percent}%" if self.shadow else f"{self.percent}%"

    @classmethod
    def from_json(cls, obj: object, field: str = "step") -> Step:
        keys = {"percent", "min_duration_s", "min_samples", "max_duration_s", "approval", "shadow"}
        data = _object(obj, field, keys)
        shadow = data.get("shadow", False)
        if not isinstance(shadow, bool):
            raise ConfigError(f"{field}.shadow", f"must be true or false, got {shadow!r}")
        step = cls(
            percent=_int(data, "percent", field),
            min_duration_s=_int(data, "min_duration_s", field),
            min_samples=_int(data, "min_samples", field),
            max_duration_s=_int(data, "max_duration_s", field, DEFAULT_MAX_DURATION_S),
            approval=_choice(data, "approval", field, APPROVALS),
            shadow=shadow,
        )
        if not 0 < step.percent <= 100:
            raise ConfigError(f"{field}.percent", f"must be within 1..100, got {step.percent}")
        if step.max_duration_s < step.min_duration_s:
            raise ConfigError(f"{field}.max_duration_s", "must not be less than min_duration_s")
        return step

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"shadow": True} if self.shadow else {}
        data.update(
            percent=self.percent,
            min_duration_s=self.min_duration_s,
            min_samples=self.min_samples,
            max_duration_s=self.max_duration_s,
            approval=self.approval,
        )
        return data


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    @classmethod
    def from_json(cls, obj: object, field: str = "plan") -> Plan:
        """Shadow steps first (if any), then exposed steps; the percents of each kind strictly
        increasing, the last step exposed and at 100. Raises ConfigError."""
        if not isinstance(obj, list) or not obj:
            raise ConfigError(field, "must be a non-empty list of steps")
        steps = tuple(Step.from_json(item, f"{field}[{i}]") for i, item in enumerate(obj))
        for i in range(1, len(steps)):
            if steps[i].shadow and not steps[i - 1].shadow:
                raise ConfigError(
                    f"{field}[{i}].shadow",
                    "a shadow step is allowed only before the first exposed step",
                )
            if steps[i].shadow == steps[i - 1].shadow and steps[i].percent <= steps[i - 1].percent:
                raise ConfigError(
                    f"{field}[{i}].percent",
                    f"must be greater than the previous step's {steps[i - 1].percent}",
                )
        if steps[-1].shadow:
            raise ConfigError(f"{field}[{len(steps) - 1}].shadow", "the last step must be an exposed step")
        if steps[-1].percent != 100:
            raise ConfigError(f"{field}[{len(steps) - 1}].percent", "the last step must be 100")
        return cls(steps)

    def to_json(self) -> list[dict[str, object]]:
        return [step.to_json() for step in self.steps]


DEFAULT_PLAN = Plan(
    (
        Step(percent=10, min_duration_s=600, min_samples=200),
        Step(percent=25, min_duration_s=600, min_samples=200),
        Step(percent=50, min_duration_s=600, min_samples=200),
        Step(percent=100, min_duration_s=0, min_samples=0),
    )
)


# --- gates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """A metric, where its numbers come from, and its rule (``rule`` is the JSON key of the
    limit: ``max``, ``min``, ``max_increase_pct``, ``max_increase_abs`` or ``max_drop_abs``).

    ``min_samples`` None means the step's. A prometheus gate's ``query`` maps each figure of its
    metric to a PromQL template (see `rollouts.promql`). ``server`` names where a prometheus gate's
    or a langfuse gate's numbers are read: a Prometheus server of PROMPTRAMP_PROMETHEUS_SERVERS, a
    Langfuse project of PROMPTRAMP_LANGFUSE_PROJECTS (JSON ``server`` or ``project``; None is
    `DEFAULT_SERVER`). Gates never carry URLs: ``refused`` says why a gate stored before that rule
    (with a ``url``) is not read — it is ``insufficient_data`` with that cause.
    """

    metric: str
    rule: str
    limit: float
    source: str = DEFAULT_SOURCE
    min_samples: int | None = None
    on_fail: str = DEFAULT_ON_FAIL
    query: Mapping[str, str] | None = None
    server: str | None = None
    refused: str | None = None

    @property
    def relative(self) -> bool:
        return self.rule in RELATIVE_RULES

    @property
    def reads_from(self) -> str:
        """Which source window holds the gate's numbers: its source, and its server when it
        names one other than `DEFAULT_SERVER` (``prometheus:eu``)."""
        if self.server is None or self.server == DEFAULT_SERVER:
            return self.source
        return f"{self.source}:{self.server}"

    @classmethod
    def from_json(cls, obj: object, field: str = "gate", servers: GateServers | None = None) -> Gate:
        """A gate from JSON. ``servers``: the names settings give (a gate a person sends); None
        for a gate read back from the database, whose names were checked when it was stored."""
        keys = {"metric", "source", "min_samples", "on_fail", "query", "server", "project", "url", *RULES}
        data = _object(obj, field, keys)
        metric = data.get("metric")
        if not isinstance(metric, str) or not _valid_metric(metric):
            raise ConfigError(
                f"{field}.metric",
                f"must be one of {', '.join(METRICS)}, score:<name> or score:*; got {metric!r}",
            )
        given = [rule for rule in RULES if data.get(rule) is not None]
        if len(given) != 1:
            raise ConfigError(field, f"needs exactly one rule of {', '.join(RULES)}")
        rule = given[0]
        limit = data[rule]
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ConfigError(f"{field}.{rule}", f"must be a number, got {limit!r}")
        if not math.isfinite(limit) or (rule in RELATIVE_RULES and limit <= 0):
            raise ConfigError(f"{field}.{rule}", f"must be a finite number > 0, got {limit!r}")
        if metric == "error_rate" and rule != "max_increase_pct" and not 0 <= limit <= 1:
            raise ConfigError(f"{field}.{rule}", "an error rate is a fraction within 0..1")
        source = _choice(data, "source", field, SOURCES)
        query = _prometheus_query(data, metric, source, field)
        server = _server(data, source, field, servers)
        min_samples = data.get("min_samples")
        return cls(
            metric=metric,
            rule=rule,
            limit=float(limit),
            source=source,
            min_samples=None if min_samples is None else _int(data, "min_samples", field),
            on_fail=_choice(data, "on_fail", field, ON_FAIL),
            query=query,
            server=server,
            refused=None if data.get("url") is None else STORED_URL_REFUSED,
        )

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"metric": self.metric, "source": self.source}
        data[self.rule] = self.limit
        if self.min_samples is not None:
            data["min_samples"] = self.min_samples
        data["on_fail"] = self.on_fail
        if self.query is not None:
            data["query"] = dict(self.query)
        if self.server is not None:
            data[SERVER_KEYS[self.source]] = self.server
        return data


@dataclass(frozen=True)
class GateServers:
    """The servers settings name, which gates may name: Prometheus servers and Langfuse projects
    (`DEFAULT_SERVER` is always one: the settings' PROMETHEUS_URL and LANGFUSE_* variables)."""

    prometheus: frozenset[str]
    langfuse: frozenset[str]


SERVER_KEYS = {"prometheus": "server", "langfuse": "project"}
SERVER_SETTINGS = {"prometheus": "PROMPTRAMP_PROMETHEUS_SERVERS", "langfuse": "PROMPTRAMP_LANGFUSE_PROJECTS"}


def _server(data: Mapping[str, object], source: str, field: str, servers: GateServers | None) -> str | None:
    """The server (prometheus) or project (langfuse) a gate names; a gate a person sends may
    carry no URL and may name only what settings name."""
    key = SERVER_KEYS.get(source)
    for other in set(SERVER_KEYS.values()) - {key}:
        if data.get(other) is not None:
            raise ConfigError(f"{field}.{other}", f"is not for {source} gates")
    if servers is not None and data.get("url") is not None:
        where = f"name a server of {SERVER_SETTINGS['prometheus']} in 'server'"
        raise ConfigError(f"{field}.url", f"gates never carry URLs: {where}")
    if key is None:
        return None
    name = data.get(key)
    if name is None:
        return None
    known = None if servers is None else getattr(servers, source)
    if not isinstance(name, str) or (known is not None and name not in known | {DEFAULT_SERVER}):
        names = ", ".join(sorted((known or frozenset()) | {DEFAULT_SERVER}))
        raise ConfigError(
            f"{field}.{key}", f"must be one of the names in {SERVER_SETTINGS[source]} ({names}); got {name!r}"
        )
    return name


def _prometheus_query(
    data: Mapping[str, object], metric: str, source: str, field: str
) -> dict[str, str] | None:
    """A prometheus gate's query templates (required); only prometheus gates have them."""
    query = data.get("query")
    if source != "prometheus":
        if query is not None:
            raise ConfigError(f"{field}.query", "is only for prometheus gates")
        return None
    try:
        templates = promql.query_templates(metric, query)
    except ValueError as error:
        raise ConfigError(f"{field}.query", str(error)) from None
    if any(len(template) > MAX_QUERY_LENGTH for template in templates.values()):
        raise ConfigError(f"{field}.query", f"a template is longer than {MAX_QUERY_LENGTH} characters")
    return templates


def _valid_metric(metric: str) -> bool:
    if metric in METRICS:
        return True
    name = metric.removeprefix(SCORE_PREFIX)
    return metric.startswith(SCORE_PREFIX) and 0 < len(name) <= 100 and not any(c.isspace() for c in name)


def parse_gates(obj: object, field: str = "gates", servers: GateServers | None = None) -> tuple[Gate, ...]:
    """A rollout's gates from JSON (a list, possibly empty); ``servers`` as in `Gate.from_json`.
    Raises ConfigError."""
    if not isinstance(obj, list) or len(obj) > MAX_GATES:
        raise ConfigError(field, f"must be a list of at most {MAX_GATES} gates")
    return tuple(Gate.from_json(item, f"{field}[{i}]", servers) for i, item in enumerate(obj))


DEFAULT_GATES = (
    Gate(metric="latency_p95_ms", rule="max_increase_pct", limit=20),
    Gate(metric="error_rate", rule="max_increase_abs", limit=0.01),
    Gate(metric="cost_per_request", rule="max", limit=0.05),
    Gate(metric=ALL_SCORES, rule="max_drop_abs", limit=0.05),
)


TRAFFIC_ON_FAIL = ("pause", "rollback", "observe")
DEFAULT_TRAFFIC_ON_FAIL = "pause"


@dataclass(frozen=True)
class TrafficCheck:
    """The rollout's built-in ``traffic`` check (`rollouts.engine`): what it does when it fails —
    ``pause`` (the default), ``rollback``, or ``observe`` (record the verdict only)."""

    on_fail: str = DEFAULT_TRAFFIC_ON_FAIL

    @classmethod
    def from_json(cls, obj: object, field: str = "traffic") -> TrafficCheck:
        """``{"on_fail": …}``; null is the default. Raises ConfigError."""
        if obj is None:
            return cls()
        data = _object(obj, field, {"on_fail"})
        return cls(on_fail=_choice(data, "on_fail", field, TRAFFIC_ON_FAIL))

    def to_json(self) -> dict[str, object]:
        return {"on_fail": self.on_fail}


DEFAULT_TRAFFIC = TrafficCheck()
