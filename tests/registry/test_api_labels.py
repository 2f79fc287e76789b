import pytest

from audit.models import AuditEntry
from registry.models import Label
from rollouts.models import Rollout
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db
LABELS = "/api/v1/prompts/support.answer/labels"


@pytest.fixture
def prompt(alice):
    return make_prompt(alice, name="support.answer", versions=3)


def labels_of(prompt):
    return dict(Label.objects.filter(prompt=prompt).values_list("name", "version__version"))


def test_putting_a_label_points_it_at_the_version_and_audits_the_reason(client_with_key, alice, prompt):
    response = client_with_key(alice, "write").put(f"{LABELS}/staging", {"version": 2, "reason": "try it"})

    assert response.status_code == 200, response.json()
    assert response.json() | {"updated_at": None} == {
        "prompt": "support.answer",
        "label": "staging",
        "version": 2,
        "updated_at": None,
    }
    assert labels_of(prompt) == {"production": 1, "staging": 2}
    entry = AuditEntry.objects.filter(action="label.move", object_id="staging").get()
    assert (entry.actor_name, entry.via, entry.reason) == ("alice", "key:test", "try it")
    assert entry.data == {"label": "staging", "from_version": None, "to_version": 2}


def test_moving_production_by_hand_works_without_a_rollout(client_with_key, alice, prompt):
    response = client_with_key(alice, "write").put(f"{LABELS}/production", {"version": 3})

    assert response.status_code == 200
    assert labels_of(prompt)["production"] == 3


def test_moving_production_while_a_rollout_is_active_answers_409(client_with_key, alice, prompt):
    v1, v2 = prompt.versions.order_by("version")[:2]
    Rollout.objects.create(prompt=prompt, baseline=v1, candidate=v2, plan=[], gates=[], state="paused")

    response = client_with_key(alice, "write").put(f"{LABELS}/production", {"version": 3})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "production_frozen"
    assert labels_of(prompt)["production"] == 1


def test_other_labels_move_while_a_rollout_is_active(client_with_key, alice, prompt):
    v1, v2 = prompt.versions.order_by("version")[:2]
    Rollout.objects.create(prompt=prompt, baseline=v1, candidate=v2, plan=[], gates=[], state="running")

    response = client_with_key(alice, "write").put(f"{LABELS}/staging", {"version": 3})

    assert response.status_code == 200, response.json()
    assert labels_of(prompt) == {"production": 1, "staging": 3}


def test_deleting_a_label_removes_it_and_audits_it(client_with_key, alice, prompt):
    api = client_with_key(alice, "write")
    api.put(f"{LABELS}/staging", {"version": 2})

    response = api.delete(f"{LABELS}/staging", {"reason": "done"})

    assert response.status_code == 204
    assert labels_of(prompt) == {"production": 1}
    entry = AuditEntry.objects.get(action="label.delete")
    assert (entry.reason, entry.data["from_version"]) == ("done", 2)


def test_deleting_a_label_without_a_body_works(client_with_key, alice, prompt):
    api = client_with_key(alice, "write")
    api.put(f"{LABELS}/staging", {"version": 2})

    response = api.delete(f"{LABELS}/staging")

    assert response.status_code == 204


@pytest.mark.parametrize(
    ("method", "label", "body", "status", "code"),
    [
        ("delete", "production", None, 409, "conflict"),
        ("delete", "staging", None, 404, "label_not_found"),
        ("delete", "latest", None, 400, "validation_error"),
        ("put", "latest", {"version": 1}, 400, "validation_error"),
        ("put", "Staging", {"version": 1}, 400, "validation_error"),
        ("put", "9lives", {"version": 1}, 400, "validation_error"),
        ("put", "x" * 65, {"version": 1}, 400, "validation_error"),
        ("put", "staging", {"version": 4}, 404, "version_not_found"),
        ("put", "staging", {"version": 0}, 400, "validation_error"),
        ("put", "staging", {"version": True}, 400, "validation_error"),
        ("put", "staging", {"version": "2"}, 400, "validation_error"),
        ("put", "staging", {"version": 2.0}, 400, "validation_error"),
        ("put", "staging", {"version": 2**70}, 400, "validation_error"),
        ("put", "staging", {"version": 2**40}, 404, "version_not_found"),
        ("put", "staging", {"version": None}, 400, "validation_error"),
        ("put", "staging", {}, 400, "validation_error"),
        ("put", "staging", {"version": 2, "reason": 5}, 400, "validation_error"),
        ("put", "staging", {"version": 2, "why": "x"}, 400, "validation_error"),
        ("delete", "production", {"reason": ["x"]}, 400, "validation_error"),
    ],
)
def test_a_bad_label_change_answers_4xx_and_changes_nothing(
    client_with_key, alice, prompt, method, label, body, status, code
):
    api = client_with_key(alice, "write")
    before = labels_of(prompt)
    audited = AuditEntry.objects.count()

    response = getattr(api, method)(f"{LABELS}/{label}", body)

    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert labels_of(prompt) == before
    assert AuditEntry.objects.count() == audited


def test_a_label_on_an_unknown_prompt_answers_404(client_with_key, alice):
    response = client_with_key(alice, "write").put("/api/v1/prompts/nope/labels/staging", {"version": 1})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "prompt_not_found"
