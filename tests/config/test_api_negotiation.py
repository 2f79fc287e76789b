"""The API answers JSON only: asking for another format is a 4xx JSON error, never a page that
fails to render; the docs page answers GET alone."""

from __future__ import annotations

import pytest

from tests.factories import make_prompt

LISTS = ["/api/v1/prompts", "/api/v1/prompts/support.answer/versions", "/api/v1/keys", "/api/v1/audit"]


@pytest.fixture
def admin_api(admin_user, client_with_key):
    make_prompt(admin_user, versions=1)
    return client_with_key(admin_user, "admin")


@pytest.mark.django_db
@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(("query", "accept", "status"), [("", "text/html", 406), ("?format=api", "*/*", 404)])
def test_asking_for_the_browsable_api_is_a_4xx_json_error(admin_api, path, query, accept, status):
    response = admin_api.get(path + query, HTTP_ACCEPT=accept)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert set(response.json()["error"]) == {"code", "message", "details"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", LISTS)
def test_a_browsers_accept_header_gets_json(admin_api, path):
    response = admin_api.get(path, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")

    assert response.status_code == 200
    assert "results" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["options", "post", "put", "delete"])
def test_the_docs_page_answers_only_get(client, method):
    response = getattr(client, method)("/api/v1/docs/", HTTP_ACCEPT="text/html")

    assert response.status_code == 405
    assert client.get("/api/v1/docs/").status_code == 200
