"""The snapshot stream in the OpenAPI schema: ``stream_path_described``, a postprocessing hook of
drf-spectacular (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``), adds
``GET /api/v1/snapshot/stream`` to the schema the other endpoints' views describe.

drf-spectacular describes the routes of the URLconf, and the stream has none on purpose: the
stream process answers it before Django (``serving.stream_asgi``) and the web server answers
404 there. A view written only to be described would be a route the web server must not have,
or code nothing runs; the hook writes the operation as OpenAPI instead, and routes nothing.
Its example is made by the functions that write the stream (``serving.snapshot_changes``).
"""

from __future__ import annotations

from typing import Any

import orjson

from access.api.schema import rate_limited_response, unauthenticated_response
from core.api_schema import RETRY_AFTER, error_response
from serving.snapshot_changes import (
    KEEPALIVE,
    SNAPSHOT_FORMAT,
    STALE_KEEPALIVE,
    SnapshotChange,
    change_data,
    sse_event,
)
from serving.stream_asgi import STREAM_PATH

_GENERATED_AT = "2025-06-02T09:30:00+00:00"
_ENTRY = b'{"production":null,"rollout":null}'  # a prompt's entry, as in GET /api/v1/snapshot
_EXAMPLE = b"".join(
    (
        sse_event(
            "snapshot",
            'W/"0f4c2d9a6b1e8f3a5c7d9e0b1a2c3d4e"',
            orjson.dumps(
                {
                    "format": SNAPSHOT_FORMAT,
                    "generated_at": _GENERATED_AT,
                    "prompts": {
                        "support.answer": orjson.Fragment(_ENTRY),
                        "support.old": orjson.Fragment(_ENTRY),
                    },
                }
            ),
        ),
        KEEPALIVE,
        sse_event(
            "change",
            'W/"9a41b7c3e5d2f0a1b6c8d4e2f7a9b3c5"',
            change_data(
                SnapshotChange(changed={"support.answer": _ENTRY}, removed=("support.old",)),
                generated_at=_GENERATED_AT,
            ),
        ),
        STALE_KEEPALIVE,
    )
).decode()


STREAM_OPERATION = {
    "operationId": "snapshot_stream_retrieve",
    "summary": "The snapshot, then each of its changes, as Server-Sent Events, for SDKs",
    "description": "Served by the **stream process**, not by the web server that serves this "
    "schema (it answers 404 on this path): the stream's URL is in the `Link: <URL>; "
    'rel="stream"` header of `GET /api/v1/snapshot` — `PROMPTRAMP_STREAM_URL` when set (behind '
    "a load balancer), else the request's host on `STREAM_PORT`. It takes an API key with the "
    "`read` scope (`Authorization: Bearer …`), not a session.\n\n"
    "Events (`text/event-stream`): at connect, `snapshot` with the whole snapshot of "
    "`GET /api/v1/snapshot` (its `id` is the snapshot's ETag); then `change` at each change, at "
    "most one per 100 ms, holding only the prompts whose entry changed and the names of those "
    "removed (`{format, generated_at, prompts, removed}`; its `id` is the new ETag). A quiet "
    "stream gets a comment every `PROMPTRAMP_STREAM_KEEPALIVE_SECONDS` (15 s): `: keepalive`, "
    "or `: stale` while the process cannot confirm its state (Redis or PostgreSQL failing), "
    "which confirms nothing. A key limited to prompts gets only theirs. The stream ends when "
    "the key is revoked, loses `read` or is limited to other prompts (or its user is "
    "deactivated). Each connect counts against the key's `PROMPTRAMP_RATE_SERVE` rate limit; "
    "a connect with a wrong key (401), against the client address's.",
    "tags": ["snapshot"],
    "security": [{"apiKey": []}],  # a Bearer key only: the stream process reads no session
    "parameters": [
        {
            "in": "header",
            "name": "Last-Event-ID",
            "required": False,
            "schema": {"type": "string"},
            "description": "When reconnecting, the `id` of the last event received: if it is the "
            "current snapshot's ETag, the stream sends no `snapshot`, only the changes from then "
            "on; any other value, or none, and it starts with a `snapshot`.",
        }
    ],
    "responses": {
        "200": {
            "description": "The stream, open until the client leaves or the key may no longer read.",
            "headers": {"Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}},
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}},
        },
        "401": unauthenticated_response(),
        "403": error_response("The key lacks the read scope."),
        "429": rate_limited_response("serve"),  # as a connect counts (serving.stream_asgi)
        "503": error_response("The keys could not be confirmed (Redis and PostgreSQL failing).", RETRY_AFTER),
    },
}


def stream_path_described(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """The schema with the stream's path, beside the snapshot's (paths stay in order)."""
    paths = {**result["paths"], STREAM_PATH: {"get": STREAM_OPERATION}}
    return {**result, "paths": dict(sorted(paths.items()))}
