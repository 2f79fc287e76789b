"""Client.score: late scores of calls already reported, by event id, result or prompt name."""

import asyncio
import threading
import uuid
from collections.abc import Callable

import pytest

from promptramp import Client

from .fake_server import FakeServer

MakeClient = Callable[..., Client]
UNREACHABLE = "http://127.0.0.1:9"


def late_scores(server: FakeServer) -> list[dict[str, object]]:
    return [event for batch in server.batches for event in batch if "of_event" in event]


def test_a_tracked_call_is_scored_later_by_its_event_id(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    # given a call tracked by one client, its event id kept from inside the block
    client = make_client(fake_server.base_url, flush_interval=3600)
    with client.track("summarize", unit="u1") as call:
        kept = call.event_id
    assert client.flush(timeout=5)

    # when another client scores it by that id
    other = make_client(fake_server.base_url, flush_interval=3600)
    score_id = other.score(kept, {"thumbs_up": 1})
    assert other.flush(timeout=5)

    # then the late score names the call, carries only its three fields, and is accepted
    [sent] = late_scores(fake_server)
    assert sent == {"event_id": score_id, "of_event": kept, "scores": {"thumbs_up": 1}}
    assert fake_server.events[kept]["prompt"] == "summarize"
    assert other.event_counts().accepted == 1


def test_the_last_call_of_a_prompt_is_scored_by_its_name_or_its_result(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)
    first = client.get("summarize", unit="u1")
    first_id = client.report(first, latency_ms=5)
    with client.track("summarize", unit="u2"):
        pass
    second_id = client.report(client.get("summarize", unit="u3"), latency_ms=5)

    client.score("summarize", {"judge": 0.7})
    client.score(first, {"judge": 0.2})
    assert client.flush(timeout=5)

    assert [(e["of_event"], e["scores"]) for e in late_scores(fake_server)] == [
        (second_id, {"judge": 0.7}),
        (first_id, {"judge": 0.2}),
    ]
    assert client.event_counts().unmatched == 0


def test_a_prompt_name_scores_the_last_call_of_this_thread_only(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    # given a call reported on this thread, and one on another thread
    client = make_client(fake_server.base_url, flush_interval=3600)
    mine = client.report(client.get("summarize", unit="a"), latency_ms=1)
    scored_elsewhere: list[str | None] = []

    def elsewhere() -> None:
        client.report(client.get("summarize", unit="b"), latency_ms=1)
        scored_elsewhere.append(client.score("summarize", {"judge": 0.1}))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()

    # when this thread scores the prompt by name
    client.score("summarize", {"judge": 0.9})
    assert client.flush(timeout=5)

    # then each thread scored its own call
    by_score = {e["scores"]["judge"]: e["of_event"] for e in late_scores(fake_server)}  # type: ignore[index]
    assert by_score[0.9] == mine
    assert by_score[0.1] != mine and scored_elsewhere[0] is not None


def test_nothing_to_score_returns_none_and_sends_nothing(make_client: MakeClient) -> None:
    client = make_client(UNREACHABLE, initial_timeout=0.2)
    fallback = client.get("greet", default="Hello")
    with client.track(fallback):
        pass

    assert client.score(fallback, {"judge": 1}) is None
    assert client.score("greet", {"judge": 1}) is None
    assert client.event_counts().enqueued == 0


@pytest.mark.parametrize(
    "scores",
    [{}, {"Judge": 1}, {"judge": float("nan")}, {"judge": "high"}, {f"s{i}": 1 for i in range(21)}],
)
def test_scores_the_server_would_refuse_raise_at_once(
    fake_server: FakeServer, make_client: MakeClient, scores: dict[str, object]
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)

    with pytest.raises(ValueError):
        client.score(str(uuid.uuid4()), scores)  # type: ignore[arg-type]
    assert client.event_counts().enqueued == 0


def test_a_late_score_of_an_unknown_call_is_counted_unmatched(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)

    client.score(str(uuid.uuid4()), {"judge": 1})
    assert client.flush(timeout=5)

    counts = client.event_counts()
    assert (counts.accepted, counts.unmatched, counts.pending) == (0, 1, 0)


def test_a_prompt_name_scores_the_last_call_of_this_asyncio_task(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)

    async def handle(unit: str) -> tuple[str | None, str | None]:
        reported = client.report(client.get("summarize", unit=unit), latency_ms=1)
        await asyncio.sleep(0.01)  # the other task reports its own call meanwhile
        return reported, client.score("summarize", {"judge": 0.5})

    async def both() -> list[tuple[str | None, str | None]]:
        return list(await asyncio.gather(handle("a"), handle("b")))

    results = asyncio.run(both())
    assert client.flush(timeout=5)

    scored = {e["event_id"]: e["of_event"] for e in late_scores(fake_server)}
    assert [scored[score_id] for _, score_id in results] == [call_id for call_id, _ in results]
