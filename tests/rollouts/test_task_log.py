"""A Celery task is logged in one line, in the trace of the request that enqueued it: starting a
rollout with a webhook configured queues the delivery, which a real worker runs."""

from __future__ import annotations

from typing import Any

import pytest

from rollouts.webhooks import DELIVER_TASK, webhook_create
from tests.factories import actor_for
from tests.servers import wait_for

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 0},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.mark.django_db(transaction=True)
def test_the_task_a_request_enqueued_is_logged_in_the_requests_trace(
    alice: Any,
    prompt: Any,
    client_with_key: Any,
    webhook_receiver: Any,
    celery_worker: Any,
    captured_lines: Any,
) -> None:
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )

    answer = client_with_key(alice, "write").post(
        "/api/v1/prompts/support.answer/rollouts",
        {"candidate_version": 2, "plan": PLAN},
        format="json",
        HTTP_TRACEPARENT=f"00-{CALLER_TRACE}-b7ad6b7169203331-01",
    )

    assert answer.status_code == 201
    webhook_receiver.wait_for(1)
    wait_for(lambda: any(line.get("task") == DELIVER_TASK for line in captured_lines.read()), seconds=10)
    [request] = [line for line in captured_lines.requests() if line["method"] == "POST"]
    [task] = [line for line in captured_lines.read() if line.get("task") == DELIVER_TASK]
    assert request["trace_id"] == task["trace_id"] == CALLER_TRACE
    assert request["route"] == "api/v1/prompts/<str:name>/rollouts"
    assert task["request_id"] not in (request["request_id"], "b7ad6b7169203331")
    assert (task["state"], task["level"]) == ("SUCCESS", "info")
    assert task["duration_ms"] > 0
    assert set(task) == {"time", "level", "request_id", "trace_id", "task", "task_id", "state", "duration_ms"}
