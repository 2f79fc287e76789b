import pytest
from django.db import DatabaseError, transaction

from audit.models import AuditEntry
from registry.models import PromptVersion
from tests.factories import make_prompt


@pytest.mark.django_db
def test_first_version_is_labelled_production_and_audited(alice):
    prompt = make_prompt(alice, versions=1)
    assert prompt.labels.get(name="production").version.version == 1
    actions = list(AuditEntry.objects.filter(prompt_name=prompt.name).values_list("action", flat=True))
    assert sorted(actions) == ["label.move", "prompt.create", "version.create"]


@pytest.mark.django_db
def test_database_refuses_to_change_a_version(alice):
    make_prompt(alice, versions=1)
    with pytest.raises(DatabaseError), transaction.atomic():
        PromptVersion.objects.update(template="changed")
    assert PromptVersion.objects.get().template.startswith("v1:")
