import pytest


@pytest.mark.django_db
def test_readyz_answers_ok_when_postgres_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_healthz_answers_without_touching_dependencies(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unknown_api_path_answers_json_404(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
