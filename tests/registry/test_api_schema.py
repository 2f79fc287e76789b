import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

REGISTRY_PATHS = {
    "/api/v1/prompts": {"get", "post"},
    "/api/v1/prompts/{name}": {"get", "patch"},
    "/api/v1/prompts/{name}/versions": {"get", "post"},
    "/api/v1/prompts/{name}/versions/{number}": {"get"},
    "/api/v1/prompts/{name}/versions/{number}/diff": {"get"},
    "/api/v1/prompts/{name}/labels/{label}": {"put", "delete"},
    "/api/v1/keys": {"get", "post"},
    "/api/v1/keys/{key_id}": {"delete"},
    "/api/v1/audit": {"get"},
}


@pytest.mark.django_db
def test_the_schema_endpoint_answers_a_valid_openapi_document(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    for path, methods in REGISTRY_PATHS.items():
        assert methods <= set(schema["paths"][path]), path


def test_the_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    schema = yaml.safe_load(target.read_text())
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["apiKey"]["description"],
    }
    version_post = schema["paths"]["/api/v1/prompts/{name}/versions"]["post"]
    assert {"200", "201", "400", "403", "409", "413", "415"} <= set(version_post["responses"])
