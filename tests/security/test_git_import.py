"""`prompts import` acts as a named user, and a prompt file cannot take a prompt over: whoever can
commit to the prompts repository used to publish as the system (an admin) and replace any
prompt's owners by declaring them."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from registry.models import Prompt
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db
TAKEOVER = "name: support.greeting\ntemplate: |\n  Hello {{name}}!\nowners: [mallory]\n"


def committed(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    identity = ["-c", "user.name=Mallory", "-c", "user.email=mallory@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "Improve the greeting"]):
        subprocess.run(["git", "-C", str(path), *identity, *args], capture_output=True, check=True)
    return path


def owners_of(name: str) -> list[str]:
    return sorted(Prompt.objects.get(name=name).owner_users.values_list("username", flat=True))


def test_an_import_without_a_user_is_refused_and_publishes_nothing(tmp_path, alice):
    repo = committed(tmp_path / "repo", {"greeting.yaml": TAKEOVER.replace("[mallory]", "[alice]")})

    with pytest.raises(CommandError, match="--user"):
        call_command("prompts", "import", str(repo), stdout=io.StringIO())

    assert not Prompt.objects.exists()


def test_a_file_declaring_other_owners_does_not_take_the_prompt_over(tmp_path, alice, django_user_model):
    django_user_model.objects.create_user("mallory")
    make_prompt(alice, name="support.greeting", versions=1)
    repo = committed(tmp_path / "repo", {"greeting.yaml": TAKEOVER})

    call_command("prompts", "import", "--user", "alice", str(repo), stdout=io.StringIO())

    prompt = Prompt.objects.get(name="support.greeting")
    assert owners_of("support.greeting") == ["alice"]
    assert prompt.versions.order_by("-version").first().author_name == "alice"
    assert not AuditEntry.objects.filter(actor_name="git import").exists()


def test_the_owners_change_only_when_the_user_asks_for_it(tmp_path, alice, django_user_model):
    django_user_model.objects.create_user("mallory")
    make_prompt(alice, name="support.greeting", versions=1)
    repo = committed(tmp_path / "repo", {"greeting.yaml": TAKEOVER})

    call_command("prompts", "import", "--user", "alice", "--update-owners", str(repo), stdout=io.StringIO())

    assert owners_of("support.greeting") == ["mallory"]
