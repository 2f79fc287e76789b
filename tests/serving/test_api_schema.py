"""GET /api/v1/snapshot/stream in the OpenAPI schema the web server serves, though the web
server does not serve the stream."""

import pytest
from drf_spectacular.validation import validate_schema

from serving.stream_asgi import STREAM_PATH
from tests.factories import make_prompt


def _schema(client):
    return client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


@pytest.mark.django_db
def test_the_schema_describes_the_stream_as_a_bearer_get_answering_server_sent_events(client):
    schema = _schema(client)

    validate_schema(schema)
    operations = schema["paths"][STREAM_PATH]
    assert set(operations) == {"get"}
    get = operations["get"]
    assert get["security"] == [{"apiKey": []}]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert [(parameter["in"], parameter["name"]) for parameter in get["parameters"]] == [
        ("header", "Last-Event-ID")
    ]
    assert set(get["responses"]["200"]["content"]) == {"text/event-stream"}
    example = get["responses"]["200"]["content"]["text/event-stream"]["example"]
    assert "event: snapshot\n" in example and "event: change\n" in example and ": keepalive\n" in example
    assert {"401", "403"} <= set(get["responses"])
    assert "stream process" in get["description"] and 'rel="stream"' in get["description"]


@pytest.mark.django_db
def test_the_described_stream_has_no_route_in_the_web_server(client, client_with_key, alice):
    make_prompt(alice)
    assert STREAM_PATH in _schema(client)["paths"]

    response = client_with_key(alice, "read").get(STREAM_PATH)

    assert response.status_code == 404


@pytest.mark.django_db
def test_the_schema_names_the_second_approver_among_an_override_adds_refusals(client):
    post = _schema(client)["paths"]["/api/v1/prompts/{name}/overrides"]["post"]

    forbidden = post["responses"]["403"]
    assert "second_approver_required" in forbidden["description"]
    assert forbidden["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
