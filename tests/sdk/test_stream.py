"""The SDK's reading of the stream: where it may connect, the events, and applying a change."""

from promptramp.snapshot import PromptVersion, Rollout, Snapshot
from promptramp.stream import StreamEvent, parse_events, stream_url

from .fake_server import rollout, text_version

BASE = "http://127.0.0.1:8000"


def test_the_stream_is_followed_on_the_same_scheme_and_host_whatever_the_port():
    link = '<http://127.0.0.1:8001/api/v1/snapshot/stream>; rel="stream"'

    assert stream_url(link, BASE) == "http://127.0.0.1:8001/api/v1/snapshot/stream"
    assert stream_url('</api/v1/snapshot/stream>; rel="stream"', BASE) == BASE + "/api/v1/snapshot/stream"


def test_a_stream_on_another_host_or_scheme_or_without_the_relation_is_not_followed():
    for link in (
        '<http://localhost:8001/api/v1/snapshot/stream>; rel="stream"',
        '<https://127.0.0.1:8001/api/v1/snapshot/stream>; rel="stream"',
        '<http://evil.example/api/v1/snapshot/stream>; rel="stream"',
        '<http://127.0.0.1:8001/api/v1/snapshot/stream>; rel="next"',
        "",
        None,
    ):
        assert stream_url(link, BASE) is None, link


def test_events_comments_and_multi_line_data_are_parsed():
    lines = [": keepalive", "", "event: change", 'id: W/"2"', "data: {", "data: }", "", "event: partial"]

    events = list(parse_events(lines))

    assert events == [StreamEvent("", None, "keepalive"), StreamEvent("change", 'W/"2"', "{\n}")]


def test_a_change_replaces_the_changed_prompts_and_drops_the_removed_ones():
    before = Snapshot.parse(
        {
            "prompts": {
                "a": {"production": text_version(1, "A1"), "rollout": None},
                "b": {"production": text_version(1, "B1"), "rollout": None},
                "c": {"production": text_version(1, "C1"), "rollout": None},
            }
        },
        'W/"1"',
    )
    split = rollout(7, 10, text_version(1, "A1"), text_version(2, "A2"), salt="s")

    after = before.changed(
        {
            "generated_at": "2026-12-06T04:00:00+00:00",
            "prompts": {"a": {"production": text_version(1, "A1"), "rollout": split}},
            "removed": ["b"],
        },
        'W/"2"',
    )

    assert set(after.prompts) == {"a", "c"}
    assert isinstance(after.prompts["a"], Rollout) and after.prompts["a"].candidate.version == 2
    assert after.prompts["c"] is before.prompts["c"]
    assert isinstance(before.prompts["a"], PromptVersion)
    assert after.etag == 'W/"2"'
