import json

import pytest

from promptramp.snapshot import PromptVersion, Rollout, Snapshot

from .fake_server import DEMO_PROMPTS, rollout, text_version


def parse(prompts: dict[str, object]) -> Snapshot:
    body = {"generated_at": "2026-11-23T12:00:00Z", "prompts": prompts}
    return Snapshot.parse(json.loads(json.dumps(body)), etag='"v1"')


def with_rollout(percent: float | str, state: str = "running") -> Snapshot:
    production = text_version(1, "one {{x}}")
    split = rollout(7, percent, production, text_version(2, "two {{x}}"), state, salt="p:7")
    return parse({"p": {"production": production, "rollout": split}})


def test_a_prompt_without_rollout_serves_production_with_no_bucket() -> None:
    snapshot = parse({"p": {"production": text_version(3, "Hi {{name}}"), "rollout": None}})

    result = snapshot.prompts["p"].resolve("user-1", None)

    assert (result.arm, result.version, result.rollout_id, result.bucket) == (
        "production",
        3,
        None,
        None,
    )
    assert result.sticky is True
    assert snapshot.prompts["p"].resolve(None, None).sticky is False


def test_a_running_rollout_splits_units_between_baseline_and_candidate() -> None:
    results = [with_rollout(50).prompts["p"].resolve(f"user-{i}", None) for i in range(200)]

    assert {(r.arm, r.version) for r in results} == {("baseline", 1), ("candidate", 2)}
    assert {r.rollout_id for r in results} == {7}
    assert all(r.arm == ("candidate" if r.bucket < 5000 else "baseline") for r in results)  # type: ignore[operator]


def test_a_paused_rollout_keeps_its_split() -> None:
    arms = {with_rollout(50, "paused").prompts["p"].resolve(f"u{i}", None).arm for i in range(100)}

    assert arms == {"baseline", "candidate"}


def test_a_rollout_in_another_state_serves_production() -> None:
    result = with_rollout(50, "pending").prompts["p"].resolve("user-1", None)

    assert (result.arm, result.version, result.rollout_id) == ("production", 1, None)


@pytest.mark.parametrize(("percent", "arm"), [(0, "baseline"), (100, "candidate"), ("100.00", "candidate")])
def test_zero_and_full_percent_put_every_unit_in_one_arm(percent: float | str, arm: str) -> None:
    prompt = with_rollout(percent).prompts["p"]

    assert {prompt.resolve(f"user-{i}", None).arm for i in range(500)} == {arm}


def test_a_percent_sent_as_decimal_string_is_read_as_a_number() -> None:
    prompt = with_rollout("12.34").prompts["p"]

    assert isinstance(prompt, Rollout)
    assert prompt.threshold == 1234


def test_variables_are_derived_from_placeholders() -> None:
    snapshot = parse(DEMO_PROMPTS)

    triage = snapshot.prompts["support.triage"]
    assert isinstance(triage, PromptVersion)
    assert (triage.kind, triage.variables) == ("chat", ["team", "ticket"])


def test_a_prompt_without_production_or_rollout_is_left_out() -> None:
    snapshot = parse({"p": {"production": None, "rollout": None}})

    assert snapshot.prompts == {}


def test_rendering_with_variables_fills_the_arm_that_was_chosen() -> None:
    prompt = with_rollout(100).prompts["p"]

    result = prompt.resolve("user-1", {"x": 42, "y": "extra"})

    assert (result.rendered, result.unused_variables) == ("two 42", ["y"])


def test_as_dict_has_the_servers_resolve_fields() -> None:
    snapshot = parse(DEMO_PROMPTS)

    text = snapshot.prompts["support.answer"].resolve("user-1", None).as_dict()
    chat = snapshot.prompts["support.triage"].resolve("user-1", {"team": "a", "ticket": "b"}).as_dict()

    resolve_fields = {
        "name",
        "version",
        "kind",
        "model",
        "config",
        "variables",
        "arm",
        "rollout_id",
        "bucket",
        "sticky",
    }
    assert set(text) == resolve_fields | {"template"}
    assert set(chat) == resolve_fields | {"messages", "rendered", "unused_variables"}


def test_a_malformed_snapshot_raises() -> None:
    with pytest.raises(ValueError):
        parse({"p": {"production": {**text_version(1, "x"), "kind": "audio"}, "rollout": None}})
    with pytest.raises(KeyError):
        parse({"p": {"production": {"version": 1, "kind": "chat"}, "rollout": None}})
    with pytest.raises(TypeError):
        parse({"p": {"production": {**text_version(1, "x"), "template": None}, "rollout": None}})
