"""PromQL templates of `prometheus` gates: which queries a gate's metric needs, and how a template
becomes the query sent to Prometheus. Pure: no Django, no I/O (the engine validates gates with it).

A gate's statistical test needs counts, not a ready-made ratio, so a prometheus gate gives one
template per *figure* of its metric (its ``query`` object):

* ``error_rate``: ``requests`` and ``errors`` — how many requests, how many of them failed;
* ``latency_p50_ms`` / ``latency_p95_ms`` / ``latency_p99_ms``: ``buckets`` — the cumulative
  bucket counts of a Prometheus histogram, one series per ``le`` (in seconds, the Prometheus
  convention), or ``buckets_ms`` when the histogram's ``le`` bounds are milliseconds; a plain
  string ``query`` on a latency gate is its ``buckets`` template;
* ``cost_per_request`` and ``score:<name>`` / ``score:*``: ``count``, ``sum`` and
  ``sum_of_squares`` of the values (the mean and its variance). For ``score:*`` each query
  returns one series per score, labelled ``score``.

Each figure's query must evaluate to an instant vector (or a scalar); its series are added up.

Placeholders, replaced in a single pass (a value can never introduce another placeholder):
``{prompt}`` the prompt's name, ``{version}`` the arm's version number, ``{arm}`` ``baseline`` or
``candidate`` (in a shadow step ``shadow_baseline`` or ``shadow``), ``{window}`` the window's
length as a duration (``600s``), ``{rollout}`` the rollout id, ``{score}`` the gate's score name
(``score:<name>`` gates only). Text values (``{prompt}``,
``{arm}``, ``{score}``) are escaped for a double-quoted PromQL string and may only appear inside
one — ``prompt="{prompt}"`` — so no value can end the string and add PromQL of its own. Every
other brace is PromQL's own (label matchers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from rollouts.gate_metrics import ALL_SCORES, QUANTILES, SCORE_PREFIX

PLACEHOLDER = re.compile(r"\{(prompt|version|arm|window|rollout|score)\}")
TEXT_PLACEHOLDERS = frozenset({"prompt", "arm", "score"})

LATENCY_METRICS = frozenset(QUANTILES)
BUCKET_FIGURES = {"buckets": 1000.0, "buckets_ms": 1.0}  # figure -> milliseconds per `le` unit
MOMENT_FIGURES = ("count", "sum", "sum_of_squares")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def figures_for(metric: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The figures a metric's queries give: (required, optional)."""
    if metric == "error_rate":
        return ("requests", "errors"), ()
    if metric in LATENCY_METRICS:
        return (), tuple(BUCKET_FIGURES)
    if metric == "cost_per_request" or metric.startswith(SCORE_PREFIX):
        return MOMENT_FIGURES, ()
    raise ValueError(f"no prometheus figures for metric {metric!r}")


def query_templates(metric: str, query: object) -> dict[str, str]:
    """A gate's ``query`` (object of figure -> template, or a string for a latency gate) as
    figure -> template. Raises ValueError saying what is missing or wrong."""
    required, optional = figures_for(metric)
    if isinstance(query, str) and metric in LATENCY_METRICS:
        query = {"buckets": query}
    if not isinstance(query, Mapping) or not query:
        names = " and ".join(required) if required else "buckets (or buckets_ms)"
        raise ValueError(f"a prometheus {metric} gate needs an object of PromQL templates: {names}")
    templates: dict[str, str] = {}
    for figure, template in query.items():
        if figure not in required + optional:
            known = ", ".join(required + optional)
            raise ValueError(f"{figure!r} is not a figure of {metric} (its figures: {known})")
        if not isinstance(template, str) or not template.strip():
            raise ValueError(f"{figure} must be a PromQL template string")
        check_template(template, allow_score=metric.startswith(SCORE_PREFIX) and metric != ALL_SCORES)
        templates[str(figure)] = template
    missing = [figure for figure in required if figure not in templates]
    if missing:
        raise ValueError(f"a prometheus {metric} gate needs templates for {' and '.join(missing)}")
    if metric in LATENCY_METRICS and len(templates) != 1:
        raise ValueError("a latency gate takes one of buckets (le in seconds) or buckets_ms")
    return templates


def check_template(template: str, *, allow_score: bool) -> None:
    """Text placeholders must sit inside a double-quoted string; ``{score}`` only where allowed."""
    quote_at = _quote_states(template)
    for match in PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name == "score" and not allow_score:
            raise ValueError("{score} is only for score:<name> gates")
        if name in TEXT_PLACEHOLDERS and quote_at[match.start()] != '"':
            raise ValueError(f'{{{name}}} must be inside a double-quoted string, e.g. {name}="{{{name}}}"')


def _quote_states(template: str) -> list[str]:
    """For each character: the quote (``"``, ``'`` or a backtick) of the string literal it is in,
    ``#`` in a comment, or ``""`` elsewhere."""
    states = []
    state, escaped = "", False
    for char in template:
        if not state:
            states.append("")
            if char in "\"'`#":
                state = char
            continue
        states.append(state)
        if state == "#":
            state = "" if char == "\n" else state
        elif escaped:
            escaped = False
        elif char == "\\" and state != "`":
            escaped = True
        elif char == state:
            state = ""
    return states


def promql_string(text: str) -> str:
    """``text`` as the contents of a double-quoted PromQL string literal (Go escapes; the result
    is also a valid JSON string body)."""
    return "".join(
        _ESCAPES.get(char) or (f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
        for char in text
    )


def window_duration(seconds: float) -> str:
    """A window length as a PromQL duration in whole seconds (at least ``1s``)."""
    return f"{max(1, math.ceil(seconds))}s"


def render(
    template: str,
    *,
    prompt: str,
    version: int,
    arm: str,
    window_seconds: float,
    rollout: int,
    score: str | None = None,
) -> str:
    """The query for one arm: every placeholder replaced, text values escaped."""
    values = {
        "prompt": promql_string(prompt),
        "version": str(int(version)),
        "arm": promql_string(arm),
        "window": window_duration(window_seconds),
        "rollout": str(int(rollout)),
    }
    if score is not None:
        values["score"] = promql_string(score)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"{{{name}}} has no value here")
        return values[name]

    return PLACEHOLDER.sub(value, template)
