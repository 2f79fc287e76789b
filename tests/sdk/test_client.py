from collections.abc import Callable

import pytest

from promptramp import Client, MissingVariables, PromptUnavailable

from .fake_server import FakeServer

MakeClient = Callable[..., Client]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_get_resolves_locally_without_any_network_call(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url)
    requests_before = len(fake_server.requests)

    results = [client.get("support.answer", unit=f"user-{i}") for i in range(1000)]

    assert len(fake_server.requests) == requests_before
    assert {result.arm for result in results} == {"baseline", "candidate"}


def test_get_renders_text_and_chat_when_variables_are_given(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url)

    text = client.get("summarize", unit="u1", variables={"text": "long", "lang": "en"})
    chat = client.get("support.triage", unit="u1", variables={"team": "ops", "ticket": "Down!"})

    assert text.rendered in ("Summarize: long", "Summarize briefly: long")
    assert text.unused_variables == ["lang"]
    assert chat.rendered == [
        {"role": "system", "content": "You triage tickets for ops."},
        {"role": "user", "content": "Down!"},
    ]


def test_get_with_missing_variables_names_them(fake_server: FakeServer, make_client: MakeClient) -> None:
    client = make_client(fake_server.base_url)

    with pytest.raises(MissingVariables, match="missing variables: question, customer"):
        client.get("support.answer", unit="u1", variables={})


def test_before_the_server_answers_a_default_is_served_and_marked(make_client: MakeClient) -> None:
    client = make_client(UNREACHABLE, defaults={"greet": "Hello {{name}}"})

    from_mapping = client.get("greet", unit="u1", variables={"name": "Ada"})
    from_call = client.get("greet", default=[{"role": "user", "content": "Hi {{name}}"}])

    assert (from_mapping.rendered, from_mapping.fallback, from_mapping.version) == (
        "Hello Ada",
        True,
        None,
    )
    assert (from_call.kind, from_call.messages) == (
        "chat",
        [{"role": "user", "content": "Hi {{name}}"}],
    )


def test_without_snapshot_or_default_get_raises_a_clear_error(make_client: MakeClient) -> None:
    client = make_client(UNREACHABLE, initial_timeout=0.2)

    with pytest.raises(PromptUnavailable, match="server has not answered yet"):
        client.get("support.answer", unit="u1")


def test_a_prompt_missing_from_the_snapshot_uses_the_default_or_raises(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url)

    assert client.get("new.prompt", default="Draft").template == "Draft"
    with pytest.raises(PromptUnavailable, match="not in the snapshot"):
        client.get("new.prompt")


def test_the_snapshot_wins_over_a_default(fake_server: FakeServer, make_client: MakeClient) -> None:
    client = make_client(fake_server.base_url, defaults={"summarize": "Old text"})

    result = client.get("summarize", unit="u1", default="Older text")

    assert (result.fallback, result.template.startswith("Summarize")) == (False, True)  # type: ignore[union-attr]


def test_track_records_the_error_type_and_reraises(fake_server: FakeServer, make_client: MakeClient) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)
    result = client.get("support.answer", unit="user-1")

    with pytest.raises(TimeoutError), client.track(result):
        raise TimeoutError("the model took too long")
    assert client.flush(timeout=5)

    (event,) = fake_server.events.values()
    assert (event["error"], event["error_type"]) == (True, "TimeoutError")
    assert (event["prompt"], event["version"], event["arm"], event["rollout_id"]) == (
        "support.answer",
        result.version,
        result.arm,
        7,
    )


def test_track_times_the_block_and_sends_the_figures_set_on_it(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)

    with client.track("support.triage", unit="user-1", variables={"team": "a", "ticket": "b"}) as call:
        call.cost_usd, call.input_tokens, call.output_tokens = 0.002, 350, 120
        call.scores["helpfulness"] = 0.8
        rendered = call.prompt.rendered
    assert client.flush(timeout=5)

    (event,) = fake_server.events.values()
    assert rendered is not None
    assert (event["arm"], event["rollout_id"], event["error"]) == ("production", None, False)
    assert (event["cost_usd"], event["input_tokens"], event["output_tokens"]) == (0.002, 350, 120)
    assert event["scores"] == {"helpfulness": 0.8}
    assert 0 <= event["latency_ms"] < 1000


def test_an_error_can_be_recorded_without_an_exception(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)

    with client.track("summarize", unit="u1") as call:
        call.error, call.error_type, call.latency_ms = True, "refusal", 12.5
    client.flush(timeout=5)

    (event,) = fake_server.events.values()
    assert (event["error"], event["error_type"], event["latency_ms"]) == (True, "refusal", 12.5)


def test_outcomes_of_fallback_results_are_never_sent(make_client: MakeClient) -> None:
    client = make_client(UNREACHABLE, initial_timeout=0.2)
    result = client.get("greet", default="Hello")

    with client.track(result):
        pass

    assert client.report(result, latency_ms=5) is None
    assert client.event_counts().enqueued == 0
