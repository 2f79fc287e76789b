"""A Langfuse server for tests: the public API endpoints the langfuse SDK's client calls.

``GET /api/public/v2/observations`` and ``GET /api/public/v3/scores``, with HTTP Basic auth
(public key : secret key), the field groups, filters, limits and cursor pagination of the real
API, and its JSON shapes (camelCase fields, ``meta.cursor`` absent on the last page), as the
SDK's generated models (`langfuse.api.commons.types.observation_v2`, `langfuse.api.scores.types`)
describe them. Anything the fake does not implement answers 400, as an unknown filter would.

Prompt management as the SDK's ``prompts`` and ``prompt_version`` clients speak it: create
``POST /api/public/v2/prompts`` (the next version number of the name; the labels given move to
it; ``latest`` always does), get ``GET /api/public/v2/prompts/{name}`` by ``version`` or
``label`` (``production`` by default; 404 when there is none), and label update
``PATCH /api/public/v2/prompts/{name}/versions/{version}`` ``{"newLabels": […]}`` (added to the
version, taken from any other; ``latest`` is refused). Tests may also create versions directly
(``add_prompt_version``), as someone using Langfuse's UI would.

Tests add generations and scores, may make pages smaller than asked (``page_size``), slow
(``delay_seconds``) or failing (``fail_status``), and read back ``requests``.
"""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.http_server import FakeHandler, running

PROJECT_ID = "project-test"
PROMPTS_PATH = "/api/public/v2/prompts/"

OBSERVATION_GROUPS = {
    "core": ("id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type"),
    "basic": (
        "name",
        "level",
        "statusMessage",
        "version",
        "environment",
        "bookmarked",
        "public",
        "userId",
        "sessionId",
        "isRootObservation",
    ),
    "time": ("completionStartTime", "createdAt", "updatedAt"),
    "io": ("input", "output"),
    "metadata": ("metadata",),
    "model": ("model", "internalModelId", "modelParameters"),
    "usage": ("usageDetails", "costDetails", "totalCost", "usagePricingTierName"),
    "prompt": ("promptId", "promptName", "promptVersion"),
    "metrics": ("latency", "timeToFirstToken"),
    "trace_context": ("tags", "release", "traceName"),
}
SCORE_CORE = (
    "id",
    "projectId",
    "name",
    "value",
    "dataType",
    "source",
    "timestamp",
    "environment",
    "createdAt",
    "updatedAt",
)
SCORE_GROUPS = {
    "details": ("comment", "configId", "metadata"),
    "subject": ("subject",),
    "annotation": ("authorUserId", "queueId"),
}
# Filter columns of the observations API and their JSON field.
FILTER_COLUMNS = {
    "id": "id",
    "type": "type",
    "name": "name",
    "traceId": "traceId",
    "startTime": "startTime",
    "endTime": "endTime",
    "environment": "environment",
    "level": "level",
    "version": "version",
    "userId": "userId",
    "sessionId": "sessionId",
    "model": "model",
    "promptName": "promptName",
    "promptVersion": "promptVersion",
    "totalCost": "totalCost",
    "latency": "latency",
}


class BadRequest(Exception):
    pass


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"invalid datetime {text!r}") from None
    if moment.tzinfo is None:
        raise BadRequest(f"datetime {text!r} has no timezone")
    return moment


@dataclass
class FakeLangfuse:
    public_key: str = "pk-lf-test"
    secret_key: str = "sk-lf-test"
    observations: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    page_size: int | None = None
    delay_seconds: float = 0.0
    fail_status: int | None = None
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    prompts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    writes: list[tuple[str, str, Any]] = field(default_factory=list)

    def add_prompt_version(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a version as ``POST /api/public/v2/prompts`` does; returns it."""
        versions = self.prompts.setdefault(body["name"], [])
        labels = [label for label in body.get("labels") or [] if label != "latest"]
        for other in versions:
            other["labels"] = [
                label for label in other["labels"] if label not in labels and label != "latest"
            ]
        now = iso(datetime.now(UTC))
        version = {
            "id": f"{body['name']}-{len(versions) + 1}",
            "name": body["name"],
            "version": len(versions) + 1,
            "type": body.get("type") or "text",
            "prompt": body["prompt"],
            "config": body.get("config") or {},
            "labels": [*labels, "latest"],
            "tags": body.get("tags") or (versions[-1]["tags"] if versions else []),
            "commitMessage": body.get("commitMessage"),
            "createdAt": now,
            "updatedAt": now,
            "createdBy": "API",
            "projectId": PROJECT_ID,
            "resolutionGraph": None,
        }
        versions.append(version)
        return version

    def labels_of(self, name: str) -> dict[str, int]:
        """label → version of the prompt ``name``."""
        return {
            label: version["version"] for version in self.prompts.get(name, []) for label in version["labels"]
        }

    def add_generation(
        self,
        *,
        id: str,
        trace_id: str,
        prompt: str | None,
        version: int | None,
        start: datetime,
        latency_s: float | None = 1.0,
        level: str = "DEFAULT",
        total_cost: float | None = None,
        type: str = "GENERATION",
    ) -> dict[str, Any]:
        end = start + timedelta(seconds=latency_s) if latency_s is not None else None
        observation = {
            "id": id,
            "traceId": trace_id,
            "startTime": iso(start),
            "endTime": iso(end) if end else None,
            "projectId": PROJECT_ID,
            "parentObservationId": None,
            "type": type,
            "name": "answer",
            "level": level,
            "statusMessage": "model error" if level == "ERROR" else None,
            "version": None,
            "environment": "default",
            "bookmarked": False,
            "public": False,
            "userId": None,
            "sessionId": None,
            "isRootObservation": False,
            "completionStartTime": None,
            "createdAt": iso(start),
            "updatedAt": iso(start),
            "input": "question",
            "output": "answer",
            "metadata": {},
            "model": "gpt-4o-mini",
            "internalModelId": None,
            "modelParameters": {},
            "usageDetails": {"input": 350, "output": 120, "total": 470},
            "costDetails": {"total": total_cost} if total_cost is not None else {},
            "totalCost": total_cost,
            "usagePricingTierName": None,
            "promptId": f"{prompt}-{version}" if prompt else None,
            "promptName": prompt,
            "promptVersion": version,
            "latency": latency_s,
            "timeToFirstToken": None,
            "tags": [],
            "release": None,
            "traceName": "support",
        }
        self.observations.append(observation)
        return observation

    def add_score(
        self,
        *,
        id: str,
        name: str,
        value: float | bool | str,
        trace_id: str,
        observation_id: str | None = None,
        data_type: str = "NUMERIC",
        at: datetime | None = None,
    ) -> None:
        moment = iso(at or datetime(2026, 11, 22, 18, 0, tzinfo=UTC))
        subject: dict[str, Any] = (
            {"kind": "observation", "id": observation_id, "traceId": trace_id}
            if observation_id
            else {"kind": "trace", "id": trace_id}
        )
        self.scores.append(
            {
                "id": id,
                "projectId": PROJECT_ID,
                "name": name,
                "value": value,
                "dataType": data_type,
                "source": "API",
                "timestamp": moment,
                "environment": "default",
                "createdAt": moment,
                "updatedAt": moment,
                "comment": None,
                "configId": None,
                "metadata": {},
                "authorUserId": None,
                "queueId": None,
                "subject": subject,
            }
        )

    def requests_to(self, path: str) -> list[dict[str, list[str]]]:
        return [params for request_path, params in self.requests if request_path == path]


class LangfuseHandler(FakeHandler):
    def do_GET(self) -> None:
        state: FakeLangfuse = self.server.state
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        state.requests.append((url.path, params))
        self.pause(state.delay_seconds)
        if not self._authorized(state):
            self.send_json(
                401, {"message": "Invalid credentials. Confirm that you've configured the correct host."}
            )
            return
        if state.fail_status:
            self.send_json(state.fail_status, {"message": "Internal Server Error"})
            return
        routes = {
            "/api/public/v2/observations": self._observations,
            "/api/public/v3/scores": self._scores,
        }
        if url.path.startswith(PROMPTS_PATH):
            try:
                found = self._prompt(state, unquote(url.path.removeprefix(PROMPTS_PATH)), params)
            except BadRequest as error:
                self.send_json(400, {"message": str(error)})
                return
            if found is None:
                self.send_json(404, {"error": "LangfuseNotFoundError", "message": "Prompt not found"})
            else:
                self.send_json(200, found)
            return
        route = routes.get(url.path)
        if route is None:
            self.send_json(404, {"message": "Not found"})
            return
        try:
            self.send_json(200, route(state, params))
        except BadRequest as error:
            self.send_json(400, {"message": str(error)})

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self._write("POST")

    def do_PATCH(self) -> None:  # noqa: N802 (http.server's name)
        self._write("PATCH")

    def _write(self, method: str) -> None:
        state: FakeLangfuse = self.server.state
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.pause(state.delay_seconds)
        if not self._authorized(state):
            self.send_json(401, {"message": "Invalid credentials."})
            return
        if state.fail_status:
            self.send_json(state.fail_status, {"message": "Internal Server Error"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.send_json(400, {"message": "Invalid JSON"})
            return
        state.writes.append((method, url.path, body))
        if method == "POST" and url.path == "/api/public/v2/prompts":
            self._create(state, body)
        elif method == "PATCH" and url.path.startswith(PROMPTS_PATH) and "/versions/" in url.path:
            name, _, number = url.path.removeprefix(PROMPTS_PATH).partition("/versions/")
            self._relabel(state, unquote(name), number, body)
        else:
            self.send_json(404, {"message": "Not found"})

    def _create(self, state: FakeLangfuse, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or "prompt" not in body:
            self.send_json(400, {"message": "name and prompt are required"})
            return
        kind = body.get("type") or "text"
        valid = (
            isinstance(body["prompt"], str)
            if kind == "text"
            else (
                kind == "chat"
                and isinstance(body["prompt"], list)
                and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in body["prompt"])
            )
        )
        if not valid or "latest" in (body.get("labels") or []):
            self.send_json(400, {"message": "Invalid request data"})
            return
        self.send_json(201, state.add_prompt_version(body))

    def _relabel(self, state: FakeLangfuse, name: str, number: str, body: Any) -> None:
        labels = body.get("newLabels") if isinstance(body, dict) else None
        if not isinstance(labels, list) or "latest" in labels:
            self.send_json(400, {"message": "Invalid request data"})
            return
        versions = state.prompts.get(name, [])
        target = next((v for v in versions if str(v["version"]) == number), None)
        if target is None:
            self.send_json(404, {"error": "LangfuseNotFoundError", "message": "Prompt not found"})
            return
        for other in versions:
            if other is not target:
                other["labels"] = [label for label in other["labels"] if label not in labels]
        target["labels"] = list(dict.fromkeys([*target["labels"], *labels]))
        self.send_json(200, target)

    def _prompt(self, state: FakeLangfuse, name: str, params: dict[str, list[str]]) -> dict[str, Any] | None:
        version, label = _one(params, "version"), _one(params, "label")
        if version is not None and label is not None:
            raise BadRequest("Cannot specify both version and label")
        for candidate in state.prompts.get(name, []):
            if (version is not None and str(candidate["version"]) == version) or (
                version is None and (label or "production") in candidate["labels"]
            ):
                return candidate
        return None

    def _authorized(self, state: FakeLangfuse) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{state.public_key}:{state.secret_key}"

    # --- observations v2 ---------------------------------------------------------------------

    def _observations(self, state: FakeLangfuse, params: dict[str, list[str]]) -> dict[str, Any]:
        if _one(params, "parseIoAsJson") == "true":
            raise BadRequest("parseIoAsJson is deprecated")
        groups = (_one(params, "fields") or "core,basic").split(",")
        for group in groups:
            if group not in OBSERVATION_GROUPS:
                raise BadRequest(f"unknown field group {group!r}")
        limit = _limit(params, default=50, maximum=1000)
        if "filter" in params:
            conditions = _conditions(_one(params, "filter") or "[]")
        else:
            conditions = _query_conditions(params)
        matching = [o for o in state.observations if all(_matches(o, c) for c in conditions)]
        matching.sort(key=lambda o: (o["startTime"], o["id"]), reverse=True)
        fields = {"core", *groups}
        page, cursor = _page(matching, params, limit, state.page_size)
        data = [{k: o[k] for g in fields for k in OBSERVATION_GROUPS[g]} for o in page]
        return {"data": data, "meta": {"cursor": cursor} if cursor else {}}

    # --- scores v3 ---------------------------------------------------------------------------

    def _scores(self, state: FakeLangfuse, params: dict[str, list[str]]) -> dict[str, Any]:
        groups = [g for g in (_one(params, "fields") or "").split(",") if g]
        for group in groups:
            if group not in SCORE_GROUPS:
                raise BadRequest(f"unknown field group {group!r}")
        limit = _limit(params, default=50, maximum=100)
        trace_ids = _list(params, "traceId")
        if "observationId" in params and trace_ids is None:
            raise BadRequest("observationId requires traceId")
        names = _list(params, "name")
        data_types = {t.upper() for t in _list(params, "dataType") or []}

        def wanted(score: dict[str, Any]) -> bool:
            subject = score["subject"]
            trace_id = subject["id"] if subject["kind"] == "trace" else subject.get("traceId")
            return (
                (trace_ids is None or trace_id in trace_ids)
                and (names is None or score["name"] in names)
                and (not data_types or score["dataType"] in data_types)
            )

        matching = sorted(
            (s for s in state.scores if wanted(s)), key=lambda s: (s["timestamp"], s["id"]), reverse=True
        )
        page, cursor = _page(matching, params, limit, state.page_size)
        keys = SCORE_CORE + tuple(k for g in groups for k in SCORE_GROUPS[g])
        meta: dict[str, Any] = {"limit": limit}
        if cursor:
            meta["cursor"] = cursor
        return {"data": [{k: s[k] for k in keys} for s in page], "meta": meta}


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _list(params: dict[str, list[str]], name: str) -> set[str] | None:
    value = _one(params, name)
    return {item for item in value.split(",") if item} if value else None


def _limit(params: dict[str, list[str]], *, default: int, maximum: int) -> int:
    text = _one(params, "limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise BadRequest(f"limit must be within 1..{maximum}")
    return int(text)


def _page(
    items: list[dict[str, Any]], params: dict[str, list[str]], limit: int, page_size: int | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page from the cursor's offset; the next cursor when more remain."""
    offset = 0
    cursor = _one(params, "cursor")
    if cursor:
        try:
            offset = json.loads(base64.urlsafe_b64decode(cursor))["offset"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise BadRequest("invalid cursor") from None
    size = min(limit, page_size or limit)
    page = items[offset : offset + size]
    if offset + size >= len(items):
        return page, None
    return page, base64.urlsafe_b64encode(json.dumps({"offset": offset + size}).encode()).decode()


def _conditions(text: str) -> list[dict[str, Any]]:
    try:
        conditions = json.loads(text)
    except ValueError:
        raise BadRequest("filter is not JSON") from None
    if not isinstance(conditions, list):
        raise BadRequest("filter must be an array")
    for condition in conditions:
        if not isinstance(condition, dict) or condition.get("column") not in FILTER_COLUMNS:
            raise BadRequest(f"unsupported filter condition {condition!r}")
        kind, operator = condition.get("type"), condition.get("operator")
        allowed = {
            "string": {"=", "contains", "starts with", "ends with", "does not contain"},
            "number": {"=", ">", "<", ">=", "<="},
            "datetime": {">", "<", ">=", "<="},
            "stringOptions": {"any of", "none of"},
        }
        if operator not in allowed.get(kind, set()):
            raise BadRequest(f"operator {operator!r} is not valid for type {kind!r}")
        if kind == "datetime":
            _parse_time(condition["value"])
    return conditions


def _query_conditions(params: dict[str, list[str]]) -> list[dict[str, Any]]:
    conditions = []
    for name in ("type", "name", "level", "traceId", "userId", "sessionId", "version"):
        value = _one(params, name)
        if value is not None:
            conditions.append({"type": "string", "column": name, "operator": "=", "value": value})
    for name, operator in (("fromStartTime", ">="), ("toStartTime", "<")):
        value = _one(params, name)
        if value is not None:
            _parse_time(value)
            conditions.append(
                {"type": "datetime", "column": "startTime", "operator": operator, "value": value}
            )
    return conditions


def _matches(observation: dict[str, Any], condition: dict[str, Any]) -> bool:
    actual = observation.get(FILTER_COLUMNS[condition["column"]])
    kind, operator, expected = condition["type"], condition["operator"], condition["value"]
    if actual is None:
        return operator in {"does not contain", "none of"}
    if kind == "datetime":
        actual, expected = _parse_time(actual), _parse_time(expected)
    if kind == "number" and not isinstance(expected, int | float):
        raise BadRequest(f"{condition['column']} needs a number")
    if kind == "stringOptions":
        return (actual in expected) == (operator == "any of")
    comparisons = {
        "=": lambda a, b: a == b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        "contains": lambda a, b: b in a,
        "does not contain": lambda a, b: b not in a,
        "starts with": lambda a, b: a.startswith(b),
        "ends with": lambda a, b: a.endswith(b),
    }
    return bool(comparisons[operator](actual, expected))


def serve(state: FakeLangfuse) -> AbstractContextManager[str]:
    """Run a fake Langfuse holding ``state``; the context's value is its base URL."""
    return running(LangfuseHandler, state)
