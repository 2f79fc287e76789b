import sys
from collections.abc import Iterator
from typing import Any

import pytest

from promptramp import ResolvedPrompt, link_generation

langfuse = pytest.importorskip("langfuse")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

CHAT = ResolvedPrompt(
    "support.triage",
    2,
    "chat",
    None,
    [{"role": "system", "content": "Triage {{ticket}}"}],
    "gpt-4o",
    {"temperature": 0},
    ["ticket"],
    "candidate",
    7,
    1234,
    True,
)


@pytest.fixture(scope="module")
def module_exporter() -> Any:
    return in_memory.InMemorySpanExporter()


@pytest.fixture(scope="module")
def tracer(module_exporter: Any) -> Iterator[Any]:
    """One Langfuse client for the module: langfuse keeps one tracer per public key."""
    client = langfuse.Langfuse(
        public_key="pk-lf-promptramp-test",
        secret_key="sk-lf-promptramp-test",
        base_url="http://127.0.0.1:9",
        span_exporter=module_exporter,
    )
    yield client
    client.shutdown()


@pytest.fixture
def exporter(module_exporter: Any) -> Any:
    module_exporter.clear()
    return module_exporter


def generation_attributes(tracer: Any, exporter: Any, result: ResolvedPrompt) -> dict[str, Any]:
    with tracer.start_as_current_observation(as_type="generation", name="answer"):
        assert link_generation(result, tracer)
    tracer.flush()
    (span,) = exporter.get_finished_spans()
    return dict(span.attributes)


def test_the_generation_gets_the_prompt_name_and_version(tracer: Any, exporter: Any) -> None:
    attributes = generation_attributes(tracer, exporter, CHAT)

    assert attributes["langfuse.observation.prompt.name"] == "support.triage"
    assert attributes["langfuse.observation.prompt.version"] == 2


def test_the_generation_gets_the_arm_and_rollout_as_metadata(tracer: Any, exporter: Any) -> None:
    attributes = generation_attributes(tracer, exporter, CHAT)

    metadata = "langfuse.observation.metadata.promptramp_"
    assert attributes[metadata + "arm"] == '"candidate"'
    assert attributes[metadata + "rollout_id"] == "7"
    assert attributes[metadata + "prompt"] == '"support.triage"'


def test_a_fallback_result_links_no_prompt(tracer: Any, exporter: Any) -> None:
    fallback = ResolvedPrompt(
        "greet",
        None,
        "text",
        "Hi",
        None,
        None,
        {},
        [],
        "production",
        None,
        None,
        False,
        fallback=True,
    )

    attributes = generation_attributes(tracer, exporter, fallback)

    assert "langfuse.observation.prompt.name" not in attributes
    assert attributes["langfuse.observation.metadata.promptramp_arm"] == '"production"'


def test_without_langfuse_installed_linking_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langfuse", None)

    assert link_generation(CHAT) is False
