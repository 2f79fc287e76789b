"""The SDK's redaction (the Langfuse client's mask): secrets and personal data leave realistic
traces, what is not secret stays, and no generated secret survives in any nesting."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from promptramp import langfuse_client, redact, redact_text
from promptramp.redaction import luhn_valid

OUR_KEY = "pr_3f9a1c2e_Xq8vR2mK9pLw4TzN7bYc1dFg5hJk3sQe6uVa0iOo2Ex"
OPENAI_KEY = "sk-proj-4fT9qLm2Xv8RkP1sZc7WbN3yHd6Ja0Ge5UiO"
LANGFUSE_PUBLIC = "pk-lf-9c1d2e3f-aaaa-bbbb-cccc-0123456789ab"
LANGFUSE_SECRET = "sk-lf-1a2b3c4d-dddd-eeee-ffff-ba9876543210"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
DB_PASSWORD = "Tr0ub4dor-and-3"
EMAIL = "jane.doe+billing@example.co.uk"
CARD = "4111 1111 1111 1111"

TRACE: dict[str, Any] = {
    "input": {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You answer billing questions."},
            {
                "role": "user",
                "content": f"Hi, I'm {EMAIL}. My card {CARD} was charged twice for order 4412. "
                f"Also our bot uses {OPENAI_KEY}, is that a problem?",
            },
        ],
        "tools": [{"name": "lookup", "url": f"postgres://billing:{DB_PASSWORD}@db.internal:5432/billing"}],
    },
    "output": {
        "role": "assistant",
        "content": "Please never share keys. Run: curl -H 'Authorization: Bearer "
        f"{BEARER}' https://api.example.com/refunds",
        "usage": {"input_tokens": 412, "output_tokens": 96, "total_tokens": 508},
    },
    "metadata": {
        "headers": {"Authorization": f"Basic {OUR_KEY}", "x-api-key": LANGFUSE_SECRET},
        "env": f"AWS_ACCESS_KEY_ID={AWS_ID} AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        "langfuse": [LANGFUSE_PUBLIC, {"password": "hunter2-plain"}],
        "promptramp_version": 3,
        "sticky": True,
        "cost": 0.0021,
    },
}
SECRETS = [
    OUR_KEY,
    OPENAI_KEY,
    LANGFUSE_PUBLIC,
    LANGFUSE_SECRET,
    AWS_ID,
    AWS_SECRET,
    BEARER,
    DB_PASSWORD,
    EMAIL,
    CARD,
    CARD.replace(" ", ""),
    "hunter2-plain",
]


def test_a_realistic_trace_keeps_no_secret_and_everything_else():
    masked = redact(data=TRACE)

    text = json.dumps(masked)
    assert [secret for secret in SECRETS if secret in text] == []
    assert masked["input"]["model"] == "gpt-4o-mini"
    assert masked["input"]["messages"][0] == TRACE["input"]["messages"][0]
    assert masked["input"]["messages"][1]["content"] == (
        "Hi, I'm [REDACTED_EMAIL]. My card [REDACTED_CARD] was charged twice for order 4412. "
        "Also our bot uses [REDACTED_KEY], is that a problem?"
    )
    assert masked["input"]["tools"][0]["url"] == "postgres://[REDACTED]@db.internal:5432/billing"
    assert "Authorization: Bearer [REDACTED]' https://api.example.com/refunds" in masked["output"]["content"]
    assert masked["output"]["usage"] == TRACE["output"]["usage"]
    assert masked["metadata"]["headers"] == {"Authorization": "[REDACTED]", "x-api-key": "[REDACTED]"}
    assert masked["metadata"]["langfuse"][1] == {"password": "[REDACTED]"}
    assert (
        masked["metadata"]["promptramp_version"],
        masked["metadata"]["sticky"],
        masked["metadata"]["cost"],
    ) == (
        3,
        True,
        0.0021,
    )


def test_the_input_is_not_changed_in_place():
    before = json.dumps(TRACE, sort_keys=True)
    redact(data=TRACE)
    assert json.dumps(TRACE, sort_keys=True) == before


@pytest.mark.parametrize(
    "text",
    [
        "Order 1234 5678 9012 3456 shipped",  # 16 digits failing the Luhn check: an order number
        "Call +1 415 555 0100 tomorrow",
        "a basic understanding of the bearer instrument",
        "the content hash is 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "max_tokens: 512, token_count 12",
    ],
)
def test_what_only_looks_like_a_secret_is_kept(text):
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "card",
    ["4111111111111111", "5500-0000-0000-0004", "3400 000000 00009", "6011000990139424"],
)
def test_card_numbers_that_pass_luhn_are_removed_in_any_grouping(card):
    assert redact_text(f"card: {card}.") == "card: [REDACTED_CARD]."


def test_a_card_right_after_another_number_is_still_found():
    assert redact_text("qty 42 4000 0000 0000 6 and 12 5500000000000004") == (
        "qty 42 [REDACTED_CARD] and 12 [REDACTED_CARD]"
    )


def test_luhn_check():
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@given(st.text(alphabet="0123456789", min_size=1, max_size=18))
def test_exactly_one_check_digit_completes_any_number(digits):
    assert sum(luhn_valid(digits + check) for check in "0123456789") == 1


@given(st.text(max_size=300))
def test_redacting_twice_changes_nothing_more(text):
    once = redact_text(text)
    assert redact_text(once) == once


def test_without_langfuse_installed_the_client_helper_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "langfuse", None)
    with pytest.raises(ImportError):
        langfuse_client()


def test_deep_structures_end_redacted_instead_of_failing():
    nested: Any = OPENAI_KEY
    for _ in range(200):
        nested = [nested]
    assert OPENAI_KEY not in json.dumps(redact(data=nested))


# --- the property ----------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
# Filler words are short (< 8 characters) and the secrets long, with a digit where the rest of the
# text has letters only (a password "password" would be found in "password="), so a secret found
# in the output can only have come from the input's secret.
FILLER = st.sampled_from(["the", "user", "said", "order", "refund", "hello", "ok", "42", "a-b", "x_y", "é"])
SEPARATOR = st.sampled_from([" ", "\n", ", ", " (", ") ", ": ", " '", "' ", '"', "\t", " — "])


def body(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=size, max_size=size + 24)


def luhn_complete(digits: str) -> str:
    for check in "0123456789":
        if luhn_valid(digits + check):
            return digits + check
    raise AssertionError("a check digit always exists")


SECRET_STRATEGIES: list[st.SearchStrategy[tuple[str, str]]] = [
    # (the text as it appears, the part that must not survive)
    body(ALNUM, 20).map(lambda b: (f"pr_{b}", b)),
    body(ALNUM, 20).map(lambda b: (f"sk-{b}", b)),
    body(ALNUM, 20).map(lambda b: (f"sk-proj-{b}", b)),
    body(ALNUM, 12).map(lambda b: (f"pk-lf-{b}", b)),
    body(ALNUM, 12).map(lambda b: (f"sk-lf-{b}", b)),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(
        lambda b: (f"AKIA{b}", b)
    ),
    st.tuples(body(ALNUM, 12), st.sampled_from(["Bearer", "bearer", "Basic"])).map(
        lambda t: (f"{t[1]} {t[0]}9", f"{t[0]}9")
    ),
    st.tuples(body(LOWER, 3), body(LOWER + "!$*", 8), st.sampled_from(["https", "postgres", "redis"])).map(
        lambda t: (f"{t[2]}://{t[0]}:{t[1]}7@host.example:5432/db", f"{t[1]}7")
    ),
    st.tuples(body(LOWER + ".", 8), body(LOWER, 3)).map(
        lambda t: (
            f"{t[0].strip('.') or 'x'}1@{t[1]}.example.com",
            f"{t[0].strip('.') or 'x'}1@{t[1]}.example.com",
        )
    ),
    st.tuples(
        st.sampled_from(["4", "51", "37", "6011"]),
        st.text(alphabet="0123456789", min_size=11, max_size=14),
        st.sampled_from(["", " ", "-"]),
    ).map(lambda t: _grouped(luhn_complete(t[0] + t[1]), t[2])),
    st.tuples(st.sampled_from(["password", "api_key", "secret", "token"]), body(LOWER, 8)).map(
        lambda t: (f"{t[0]}={t[1]}7", f"{t[1]}7")
    ),
]


def _grouped(number: str, separator: str) -> tuple[str, str]:
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    return grouped, number


@st.composite
def text_with_secrets(draw: st.DrawFn) -> tuple[str, list[str]]:
    parts: list[str] = []
    secrets: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        parts.append(" ".join(draw(st.lists(FILLER, max_size=4))))
        shown, secret = draw(st.one_of(SECRET_STRATEGIES))
        parts += [draw(SEPARATOR), shown, draw(SEPARATOR)]
        secrets.append(secret)
    return "".join(parts), secrets


@st.composite
def traces(draw: st.DrawFn) -> tuple[Any, list[str]]:
    secrets: list[str] = []

    def leaf() -> Any:
        text, found = draw(text_with_secrets())
        secrets.extend(found)
        return text

    def node(depth: int) -> Any:
        shape = draw(st.sampled_from(["leaf", "leaf", "dict", "list", "number"] if depth < 4 else ["leaf"]))
        if shape == "dict":
            return {
                draw(st.sampled_from(["input", "output", "content", "msg", "args"])) + str(i): node(depth + 1)
                for i in range(draw(st.integers(1, 3)))
            }
        if shape == "list":
            return [node(depth + 1) for _ in range(draw(st.integers(1, 3)))]
        if shape == "number":
            return draw(st.integers(-(10**6), 10**6))
        return leaf()

    return node(0), secrets


@given(traces())
def test_masked_output_never_contains_an_input_secret(trace):
    data, secrets = trace
    text = json.dumps(redact(data=data), ensure_ascii=False)
    assert [secret for secret in secrets if secret in text] == []


# --- through the Langfuse client ------------------------------------------------------------


@pytest.fixture(scope="module")
def exported() -> Iterator[tuple[Any, Any]]:
    exporter = InMemorySpanExporter()
    client = langfuse_client(
        public_key="pk-lf-promptramp-redaction",
        secret_key="sk-lf-promptramp-redaction",
        base_url="http://127.0.0.1:9",
        span_exporter=exporter,
    )
    yield client, exporter
    client.shutdown()


def test_the_helpers_client_sends_no_secret_of_a_generation(exported):
    client, exporter = exported
    exporter.clear()
    with client.start_as_current_observation(
        as_type="generation", name="answer", input=TRACE["input"]
    ) as generation:
        generation.update(output=TRACE["output"], metadata=TRACE["metadata"])
    client.flush()

    (span,) = exporter.get_finished_spans()
    sent = json.dumps(dict(span.attributes))
    assert [secret for secret in SECRETS if secret in sent] == []
    assert "[REDACTED_EMAIL]" in sent and "gpt-4o-mini" in sent
