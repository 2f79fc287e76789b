import pytest

from tests.factories import make_prompt
from tests.serving.helpers import put_rollout

pytestmark = pytest.mark.django_db
URL = "/api/v1/prompts/support.answer/render"


@pytest.fixture
def client(alice, client_with_key):
    return client_with_key(alice, "read")


def test_render_fills_the_template_and_lists_unused_variables(alice, client):
    make_prompt(alice, versions=1)

    response = client.post(
        URL,
        {
            "unit": "user-1",
            "variables": {"question": "Where is my parcel?", "customer": "Ada", "tone": "warm"},
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["rendered"] == "v1: Answer Where is my parcel? for Ada"
    assert body["unused_variables"] == ["tone"]
    assert body["name"] == "support.answer" and body["version"] == 1 and body["arm"] == "production"
    assert body["template"] == "v1: Answer {{question}} for {{customer}}"
    assert body["sticky"] is True and body["bucket"] is None


def test_render_inserts_values_with_str(alice, client):
    make_prompt(alice, versions=1)

    body = client.post(URL, {"variables": {"question": 42, "customer": None}}, format="json").json()

    assert body["rendered"] == "v1: Answer 42 for None"
    body = client.post(URL, {"variables": {"question": True, "customer": 1.5}}, format="json").json()
    assert body["rendered"] == "v1: Answer True for 1.5"


def test_render_of_a_chat_prompt_fills_each_message(alice, client):
    make_prompt(alice, name="chat.helper", kind="chat", versions=1)

    response = client.post(
        "/api/v1/prompts/chat.helper/render", {"variables": {"customer": "Ada"}}, format="json"
    )

    assert response.json()["rendered"] == [{"role": "system", "content": "v1: help Ada"}]
    assert response.json()["unused_variables"] == []


def test_render_follows_the_units_arm(alice, client):
    prompt = make_prompt(alice, versions=2)
    rollout = put_rollout(prompt, percent="50", salt="answer:1")
    variables = {"question": "q", "customer": "c"}

    low = client.post(URL, {"unit": "tenant/acme", "variables": variables}, format="json").json()
    high = client.post(URL, {"unit": "user-1", "variables": variables}, format="json").json()

    assert (low["arm"], low["bucket"], low["rendered"]) == ("candidate", 168, "v2: Answer q for c")
    assert (high["arm"], high["bucket"], high["rendered"]) == ("baseline", 6681, "v1: Answer q for c")
    assert low["rollout_id"] == rollout.pk


def test_missing_variables_are_400_naming_them(alice, client):
    make_prompt(alice, versions=1)

    response = client.post(URL, {"unit": "u", "variables": {"question": "q"}}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == {"missing": ["customer"]}
    assert "customer" in error["message"]


@pytest.mark.parametrize(
    "payload",
    [
        {"variables": ["question"]},
        {"variables": "question=q"},
        {"variables": {"question": {"nested": 1}, "customer": "c"}},
        {"variables": {"question": [1], "customer": "c"}},
        {"unit": 7, "variables": {}},
        {"unit": "x" * 513, "variables": {}},
    ],
)
def test_malformed_render_requests_are_400(alice, client, payload):
    make_prompt(alice, versions=1)

    response = client.post(URL, payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_body_that_is_not_an_object_is_400(alice, client):
    make_prompt(alice, versions=1)

    response = client.post(URL, [1, 2], format="json")

    assert response.status_code == 400


def test_render_of_an_unknown_prompt_is_404(client):
    response = client.post("/api/v1/prompts/nope/render", {"variables": {}}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "prompt_not_found"


def test_render_needs_the_read_scope(alice, client_with_key):
    make_prompt(alice, versions=1)

    response = client_with_key(alice, "ingest").post(URL, {"variables": {}}, format="json")

    assert response.status_code == 403
