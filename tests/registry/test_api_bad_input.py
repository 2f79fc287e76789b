"""Hostile and careless input: each case answers 4xx in the JSON error shape and stores nothing."""

from urllib.parse import quote

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit.models import AuditEntry
from registry.models import Label, Prompt, PromptVersion
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db
ERROR_KEYS = {"code", "message", "details"}
BIG = "x" * (256 * 1024 + 1)


@pytest.fixture
def api(alice, client_with_key):
    make_prompt(alice, name="support.answer", versions=1)
    make_prompt(alice, name="support.chat", kind="chat", versions=1)
    return client_with_key(alice, "write")


def stored():
    return (
        list(Prompt.objects.order_by("name").values("name", "kind", "description", "tags", "latest_version")),
        list(PromptVersion.objects.order_by("pk").values_list("prompt__name", "version", "content_hash")),
        list(Label.objects.order_by("pk").values_list("prompt__name", "name", "version__version")),
        AuditEntry.objects.count(),
    )


def nested(depth):
    """{"k": {"k": … 1}} with ``depth`` objects."""
    value = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def assert_refused(response, status, code=None):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    if code:
        assert error["code"] == code


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "Support"}, id="upper-case"),
        pytest.param({"name": ""}, id="empty"),
        pytest.param({"name": "-leading-dash"}, id="leading-dash"),
        pytest.param({"name": "a" * 129}, id="too-long"),
        pytest.param({"name": "has space"}, id="space"),
        pytest.param({"name": "ünïcode"}, id="unicode"),
        pytest.param({"name": "a/b"}, id="slash"),
        pytest.param({"name": 123}, id="number"),
        pytest.param({"name": None}, id="null"),
        pytest.param({"name": ["support"]}, id="list"),
        pytest.param({"name": {"a": 1}}, id="object"),
        pytest.param({"name": True}, id="bool"),
        pytest.param({}, id="missing-name"),
        pytest.param({"name": "ok", "kind": "image"}, id="kind-unknown"),
        pytest.param({"name": "ok", "kind": 1}, id="kind-number"),
        pytest.param({"name": "ok", "kind": None}, id="kind-null"),
        pytest.param({"name": "ok", "tags": "support"}, id="tags-string"),
        pytest.param({"name": "ok", "tags": [1]}, id="tags-number"),
        pytest.param({"name": "ok", "tags": ["bad tag"]}, id="tags-space"),
        pytest.param({"name": "ok", "tags": ["x" * 65]}, id="tags-long"),
        pytest.param({"name": "ok", "tags": [None]}, id="tags-null-item"),
        pytest.param({"name": "ok", "tags": [f"t{n}" for n in range(51)]}, id="tags-too-many"),
        pytest.param({"name": "ok", "owners": "alice"}, id="owners-string"),
        pytest.param({"name": "ok", "owners": ["nobody"]}, id="owners-unknown-user"),
        pytest.param({"name": "ok", "owners": ["group:nope"]}, id="owners-unknown-group"),
        pytest.param({"name": "ok", "owners": [1]}, id="owners-number"),
        pytest.param({"name": "ok", "owners": [""]}, id="owners-empty"),
        pytest.param({"name": "ok", "owners": None}, id="owners-null"),
        pytest.param({"name": "ok", "description": 5}, id="description-number"),
        pytest.param({"name": "ok", "description": ["x"]}, id="description-list"),
        pytest.param({"name": "ok", "description": "x" * 10_001}, id="description-long"),
        pytest.param({"name": "ok", "description": "a\x00b"}, id="description-nul"),
        pytest.param({"name": "ok", "colour": "red"}, id="unknown-field"),
        pytest.param([], id="body-list"),
        pytest.param("support.answer", id="body-string"),
        pytest.param(1, id="body-number"),
        pytest.param(None, id="body-null"),
    ],
)
def test_a_bad_prompt_is_refused_with_400_and_nothing_is_stored(api, body):
    before = stored()

    response = api.post("/api/v1/prompts", body)

    assert_refused(response, 400)
    assert stored() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({}, None, id="template-missing"),
        pytest.param({"template": ""}, None, id="template-empty"),
        pytest.param({"template": 5}, None, id="template-number"),
        pytest.param({"template": ["a"]}, None, id="template-list"),
        pytest.param({"template": None}, None, id="template-null"),
        pytest.param({"template": BIG}, "too_large", id="template-over-256kb"),
        pytest.param(
            {"template": "t", "messages": [{"role": "user", "content": "x"}]}, None, id="messages-on-text"
        ),
        pytest.param({"template": "t", "model": 5}, None, id="model-number"),
        pytest.param({"template": "t", "model": "m" * 201}, None, id="model-long"),
        pytest.param({"template": "t", "config": []}, None, id="config-list"),
        pytest.param({"template": "t", "config": "hot"}, None, id="config-string"),
        pytest.param({"template": "t", "config": {"k": "v" * 70_000}}, "too_large", id="config-over-64kb"),
        pytest.param({"template": "t", "config": nested(33)}, None, id="config-nested-33-deep"),
        pytest.param({"template": "t", "config": nested(900)}, None, id="config-nested-900-deep"),
        pytest.param({"template": "t", "message": 5}, None, id="message-number"),
        pytest.param({"template": "t", "git_commit": "xyz"}, None, id="git-commit-not-hex"),
        pytest.param({"template": "t", "git_commit": 1234567}, None, id="git-commit-number"),
        pytest.param({"template": "t", "git_tag": ""}, None, id="git-tag-empty"),
        pytest.param({"template": "t", "git_tag": 5}, None, id="git-tag-number"),
        pytest.param({"template": "t", "labels": "staging"}, None, id="labels-string"),
        pytest.param({"template": "t", "labels": ["latest"]}, None, id="labels-latest"),
        pytest.param({"template": "t", "labels": ["Bad"]}, None, id="labels-invalid"),
        pytest.param({"template": "t", "labels": [1]}, None, id="labels-number"),
        pytest.param({"template": "t", "labels": [f"l{n}" for n in range(21)]}, None, id="labels-too-many"),
        pytest.param({"template": "t", "labels": None}, None, id="labels-null"),
        pytest.param({"template": "t", "author": "mallory"}, None, id="unknown-field"),
        pytest.param({"template": "t", "version": 7}, None, id="version-is-not-chosen-by-clients"),
        pytest.param({"template": "t\x00"}, None, id="template-nul"),
    ],
)
def test_a_bad_text_version_is_refused_with_400_and_nothing_is_stored(api, body, code):
    before = stored()

    response = api.post("/api/v1/prompts/support.answer/versions", body)

    assert_refused(response, 400, code)
    assert stored() == before


def test_a_config_nested_32_levels_deep_is_accepted(api):
    response = api.post("/api/v1/prompts/support.answer/versions", {"template": "t", "config": nested(32)})

    assert response.status_code == 201
    assert response.json()["config"] == nested(32)


def message(role="user", content="hi"):
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({}, None, id="messages-missing"),
        pytest.param({"messages": "hi"}, None, id="messages-string"),
        pytest.param({"messages": []}, None, id="messages-empty"),
        pytest.param({"messages": [{"role": "system"}]}, None, id="message-without-content"),
        pytest.param({"messages": [{"content": "x"}]}, None, id="message-without-role"),
        pytest.param({"messages": [message(role="System")]}, None, id="role-invalid"),
        pytest.param({"messages": [message(role=3)]}, None, id="role-number"),
        pytest.param({"messages": [message(content=5)]}, None, id="content-number"),
        pytest.param({"messages": [message(content=None)]}, None, id="content-null"),
        pytest.param({"messages": [{**message(), "name": "x"}]}, None, id="message-extra-key"),
        pytest.param({"messages": ["hi"]}, None, id="message-string"),
        pytest.param({"messages": [message()] * 501}, None, id="too-many-messages"),
        pytest.param(
            {"messages": [message(content="x" * 200_000), message(content="y" * 70_000)]},
            "too_large",
            id="messages-over-256kb",
        ),
        pytest.param({"messages": [message()], "template": "t"}, None, id="template-on-chat"),
    ],
)
def test_a_bad_chat_version_is_refused_with_400_and_nothing_is_stored(api, body, code):
    before = stored()

    response = api.post("/api/v1/prompts/support.chat/versions", body)

    assert_refused(response, 400, code)
    assert stored() == before


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        pytest.param(b'{"name": ', "application/json", 400, "parse_error", id="truncated-json"),
        pytest.param(b"{'name': 'x'}", "application/json", 400, "parse_error", id="single-quotes"),
        pytest.param(b'{"name": NaN}', "application/json", 400, "parse_error", id="nan"),
        pytest.param(b'{"name": 1e999}', "application/json", 400, "parse_error", id="infinity"),
        pytest.param(b'{"name": "\\ud800"}', "application/json", 400, "parse_error", id="lone-surrogate"),
        pytest.param(b'{"name": "\xff\xfe"}', "application/json", 400, "parse_error", id="not-utf8"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "application/json", 400, "parse_error", id="deep-nesting"),
        pytest.param(b"[" * 1000 + b"]" * 1000, "application/json", 400, None, id="nesting-1000-deep"),
        pytest.param(
            b'{"name": "ok", "description": ' + b"[" * 1000 + b'"\\u0000"' + b"]" * 1000 + b"}",
            "application/json",
            400,
            None,
            id="nul-1000-deep",
        ),
        pytest.param(b'{"name": "ok", "description": "\\u0000"}', "application/json", 400, None, id="nul"),
        pytest.param(b'{"name": "ok"}', "text/plain", 415, "unsupported_media_type", id="text-plain"),
        pytest.param(b"name=ok", "application/x-www-form-urlencoded", 415, None, id="form"),
        pytest.param(b"<name>ok</name>", "application/xml", 415, None, id="xml"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(api, raw, content_type, status, code):
    before = stored()

    response = api.generic("POST", "/api/v1/prompts", raw, content_type=content_type)

    assert_refused(response, status, code)
    assert stored() == before


def test_a_body_over_the_upload_limit_answers_413_json(api, settings):
    before = stored()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = b'{"template": "' + b"x" * limit + b'"}'

    response = api.generic(
        "POST", "/api/v1/prompts/support.answer/versions", body, content_type="application/json"
    )

    assert_refused(response, 413, "too_large")
    assert response.json()["error"]["details"] == {"max_bytes": limit}
    assert stored() == before


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_the_body_limit_follows_the_setting(api):
    body = b'{"template": "' + b"x" * 1000 + b'"}'

    response = api.generic(
        "POST", "/api/v1/prompts/support.answer/versions", body, content_type="application/json"
    )

    assert_refused(response, 413, "too_large")


def test_unicode_content_is_stored_as_sent(api):
    template = "Grüße {{name}} — 你好 🌍 \u202e"

    response = api.post("/api/v1/prompts/support.answer/versions", {"template": template, "model": "模型"})

    assert response.status_code == 201
    assert api.get("/api/v1/prompts/support.answer/versions/2").json()["template"] == template


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/prompts/a%00b", 404),
        ("/api/v1/prompts/a%00b/versions", 404),
        ("/api/v1/prompts/a%00b/versions/1", 404),
        ("/api/v1/prompts/" + "a" * 300, 404),
        ("/api/v1/prompts/support.answer/versions/99999999999999999999999", 404),
        ("/api/v1/prompts/support.answer/versions/x", 404),
        ("/api/v1/prompts?search=%00", 400),
        ("/api/v1/prompts?tag=%00", 400),
        ("/api/v1/prompts?owner=" + "a" * 600, 400),
        ("/api/v1/prompts?page=0", 404),
        ("/api/v1/prompts?page=x", 404),
        ("/api/v1/prompts/support.answer?label=%00", 400),
    ],
)
def test_hostile_paths_and_queries_answer_4xx_json(api, path, status):
    response = api.get(path)

    assert_refused(response, status)


def test_a_hostile_label_path_answers_4xx_json(api):
    before = stored()

    response = api.put("/api/v1/prompts/support.answer/labels/a%00b", {"version": 1})

    assert_refused(response, 400)
    assert stored() == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
ENDPOINTS = [
    ("post", "/api/v1/prompts", ["name", "kind", "description", "tags", "owners"]),
    ("patch", "/api/v1/prompts/support.answer", ["description", "tags", "owners"]),
    ("post", "/api/v1/prompts/support.answer/versions", ["template", "model", "config", "message", "labels"]),
    ("post", "/api/v1/prompts/support.chat/versions", ["messages", "model", "git_commit", "git_tag"]),
    ("put", "/api/v1/prompts/support.answer/labels/staging", ["version", "reason"]),
]


@pytest.mark.parametrize(("method", "path", "fields"), ENDPOINTS)
@hypothesis_settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_json_values_in_known_fields_never_answer_5xx(api, method, path, fields, data):
    body = data.draw(st.dictionaries(st.sampled_from(fields), json_values, max_size=len(fields)))

    response = getattr(api, method)(path, body)

    assert response.status_code < 500, response.content[:300]
    assert response.status_code in (200, 201) or set(response.json()["error"]) == ERROR_KEYS


@hypothesis_settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=40), label=st.text(min_size=1, max_size=40))
def test_any_text_in_path_segments_never_answers_5xx(api, name, label):
    name_part, label_part = quote(name, safe=""), quote(label, safe="")

    responses = [
        api.get(f"/api/v1/prompts/{name_part}"),
        api.get(f"/api/v1/prompts/{name_part}/versions"),
        api.get("/api/v1/prompts/support.answer", {"label": label}),
        api.put(f"/api/v1/prompts/support.answer/labels/{label_part}", {"version": 1}),
        api.delete(f"/api/v1/prompts/{name_part}/labels/{label_part}"),
    ]

    assert all(r.status_code < 500 for r in responses), [r.content[:200] for r in responses]


@pytest.mark.parametrize("method", ["options", "head"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/prompts",
        "/api/v1/prompts/support.answer",
        "/api/v1/prompts/support.answer/versions",
        "/api/v1/prompts/support.answer/versions/1",
        "/api/v1/prompts/support.answer/versions/1/diff",
        "/api/v1/prompts/support.answer/labels/staging",
        "/api/v1/keys",
        "/api/v1/keys/1",
        "/api/v1/audit",
    ],
)
def test_every_endpoint_answers_options_and_head_without_5xx(client_with_key, admin_user, api, method, path):
    response = getattr(client_with_key(admin_user, "admin"), method)(path)

    assert response.status_code in (200, 400, 405)
