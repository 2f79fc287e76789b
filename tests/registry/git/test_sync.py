"""`manage.py prompts import/export` against real git repositories."""

import io
import subprocess

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from core.actors import Actor
from registry.models import Prompt, PromptVersion
from registry.services import prompt_create, version_create
from tests.factories import make_prompt

ANSWER = """\
name: support.answer
description: Answers a customer's question.
tags: [support]
owners: [alice, group:support]
model: gpt-4o-mini
config: {temperature: 0.2}
messages:
  - role: system
    content: You answer for {{company}}.
  - role: user
    content: "{{question}}"
"""
GREETING = "name: support.greeting\ntemplate: |\n  Hello {{name}}!\n"


class Repo:
    def __init__(self, path):
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args):
        env_args = ["-c", "user.name=Prompt Bot", "-c", "user.email=bot@example.com"]
        done = subprocess.run(
            ["git", "-C", str(self.path), *env_args, *args], capture_output=True, check=True
        )
        return done.stdout.decode().strip()

    def commit(self, message, files, tag=None):
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        if tag:
            self.git("tag", tag)
        return self.git("rev-parse", "HEAD")


def prompts(*args):
    out = io.StringIO()
    call_command("prompts", *args, stdout=out)
    return out.getvalue()


def snapshot_of_registry():
    return (
        list(PromptVersion.objects.values_list("prompt__name", "version", "content_hash").order_by("id")),
        AuditEntry.objects.count(),
    )


@pytest.fixture
def repo(tmp_path, alice):
    Group.objects.create(name="support")
    return Repo(tmp_path / "prompts-repo")


@pytest.mark.django_db
def test_import_creates_prompts_and_versions_that_record_the_commit_and_tag(repo):
    commit = repo.commit(
        "Add support prompts", {"prompts/answer.yaml": ANSWER, "greeting.yml": GREETING}, tag="v1.0"
    )

    printed = prompts("import", "--user", "alice", str(repo.path))

    answer = Prompt.objects.get(name="support.answer")
    version = answer.versions.get()
    assert (answer.kind, answer.description, answer.tags) == (
        "chat",
        "Answers a customer's question.",
        ["support"],
    )
    assert sorted(answer.owner_users.values_list("username", flat=True)) == ["alice"]
    assert list(answer.owner_groups.values_list("name", flat=True)) == ["support"]
    assert (version.git_commit, version.git_tag, version.message) == (commit, "v1.0", "Add support prompts")
    assert version.messages[1] == {"role": "user", "content": "{{question}}"}
    assert (version.model, version.config, version.variables) == (
        "gpt-4o-mini",
        {"temperature": 0.2},
        ["company", "question"],
    )
    assert answer.labels.get(name="production").version == version
    greeting = PromptVersion.objects.get(prompt__name="support.greeting")
    assert (greeting.template, greeting.variables) == ("Hello {{name}}!\n", ["name"])
    assert "2 version(s) published from 2 file(s)" in printed and "(tag v1.0)" in printed


@pytest.mark.django_db
def test_importing_the_same_commit_again_creates_nothing(repo):
    repo.commit("Add support prompts", {"answer.yaml": ANSWER, "greeting.yaml": GREETING})
    prompts("import", "--user", "alice", str(repo.path))
    before = snapshot_of_registry()

    printed = prompts("import", "--user", "alice", str(repo.path))

    assert snapshot_of_registry() == before
    assert printed.count("already imported") == 2
    assert "0 version(s) published" in printed


@pytest.mark.django_db
def test_a_later_commit_publishes_only_the_prompts_it_changed(repo):
    first = repo.commit("Add support prompts", {"answer.yaml": ANSWER, "greeting.yaml": GREETING})
    prompts("import", "--user", "alice", str(repo.path))
    second = repo.commit("Warmer greeting", {"greeting.yaml": GREETING.replace("Hello", "Hi there")})

    printed = prompts("import", "--user", "alice", str(repo.path), "--ref", "main")

    greeting = Prompt.objects.get(name="support.greeting")
    assert list(greeting.versions.order_by("version").values_list("version", "git_commit")) == [
        (1, first),
        (2, second),
    ]
    assert greeting.labels.get(name="production").version.version == 1  # a rollout moves production
    assert Prompt.objects.get(name="support.answer").versions.count() == 1
    assert "answer.yaml: support.answer v1 unchanged" in printed
    assert "greeting.yaml: support.greeting v2 new version" in printed


@pytest.mark.django_db
def test_import_reads_the_commit_at_the_ref_not_the_working_tree(repo):
    first = repo.commit("Greeting", {"greeting.yaml": GREETING}, tag="prompts-1")
    repo.commit("Shout", {"greeting.yaml": GREETING.replace("Hello", "HELLO")})
    (repo.path / "greeting.yaml").write_text(GREETING.replace("Hello", "uncommitted"))

    prompts("import", "--user", "alice", str(repo.path), "--ref", "prompts-1")

    version = PromptVersion.objects.get(prompt__name="support.greeting")
    assert (version.git_commit, version.git_tag, version.template) == (
        first,
        "prompts-1",
        "Hello {{name}}!\n",
    )


@pytest.mark.django_db
def test_import_of_a_folder_reads_only_the_files_under_it(repo):
    repo.commit(
        "Two folders", {"prompts/greeting.yaml": GREETING, "ci/workflow.yaml": "name: ci\njobs: {}\n"}
    )

    prompts("import", "--user", "alice", str(repo.path / "prompts"))

    assert list(Prompt.objects.values_list("name", flat=True)) == ["support.greeting"]


@pytest.mark.django_db
def test_with_update_owners_the_owners_a_file_declares_replace_the_registrys(repo, alice, bob):
    make_prompt(alice, name="support.greeting")
    repo.commit("Greeting", {"greeting.yaml": GREETING})
    prompts("import", "--user", "alice", str(repo.path))
    assert list(Prompt.objects.get().owner_users.values_list("username", flat=True)) == ["alice"]

    repo.commit("Bob owns it", {"greeting.yaml": GREETING + "owners: [bob]\n"})
    prompts("import", "--user", "alice", "--update-owners", str(repo.path))

    assert list(Prompt.objects.get().owner_users.values_list("username", flat=True)) == ["bob"]
    assert AuditEntry.objects.filter(action="prompt.update", actor_name="alice").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"bad.yaml": "name: [oops"}, "bad.yaml: not valid YAML"),
        ({"bad.yaml": "name: Not A Name\ntemplate: x\n"}, "bad.yaml: "),
        ({"bad.yaml": "name: x\ntemplate: hi\nowners: [nobody]\n"}, "bad.yaml: Unknown owners."),
        ({"bad.yaml": "name: x\nmessages: [{role: user}]\n"}, "bad.yaml: "),
        (
            {"answer.yaml": "name: support.answer\ntemplate: hi\n"},
            "answer.yaml: 'support.answer' is a chat prompt",
        ),
        (
            {"bad.yaml": GREETING, "copy.yaml": GREETING},
            "prompt 'support.greeting' is also declared in bad.yaml",
        ),
    ],
)
def test_a_bad_file_imports_nothing_and_says_which_file(repo, files, problem):
    repo.commit("Good prompts", {"answer.yaml": ANSWER})
    prompts("import", "--user", "alice", str(repo.path))
    repo.commit("Good and bad", {"good.yaml": GREETING.replace("support.greeting", "good.one"), **files})
    before = snapshot_of_registry()

    with pytest.raises(CommandError) as refused:
        prompts("import", "--user", "alice", str(repo.path))

    assert problem in str(refused.value)
    assert snapshot_of_registry() == before
    assert not Prompt.objects.filter(name="good.one").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("where", "ref", "problem"),
    [
        ("outside", "HEAD", "not a git repository"),
        ("repo", "no-such-branch", "'no-such-branch' is not a commit, branch or tag"),
        ("repo", "--output=/tmp/x", "is not a ref"),
        ("missing", "HEAD", "is not a folder"),
    ],
)
def test_import_from_something_that_is_not_a_commit_says_so(repo, tmp_path, where, ref, problem):
    repo.commit("Greeting", {"greeting.yaml": GREETING})
    (tmp_path / "outside").mkdir()
    path = {"repo": repo.path, "outside": tmp_path / "outside", "missing": tmp_path / "missing"}[where]

    with pytest.raises(CommandError, match=problem):
        prompts("import", "--user", "alice", str(path), f"--ref={ref}")

    assert not Prompt.objects.exists()


@pytest.mark.django_db
def test_export_then_import_elsewhere_gives_the_same_production_content(repo, tmp_path, alice):
    repo.commit("Add support prompts", {"answer.yaml": ANSWER, "greeting.yaml": GREETING})
    prompts("import", "--user", "alice", str(repo.path))
    exported = Repo(tmp_path / "exported")

    printed = prompts("export", str(exported.path))

    written = sorted(p.name for p in exported.path.glob("*.yaml"))
    assert "2 prompt file(s) written" in printed
    assert written == ["support.answer.yaml", "support.greeting.yaml"]
    assert "owners:\n- alice\n- group:support\n" in (exported.path / "support.answer.yaml").read_text()
    # Versions are immutable, so the round trip imports the files back under other names.
    hashes = dict(PromptVersion.objects.values_list("prompt__name", "content_hash"))
    for name in written:
        text = (exported.path / name).read_text().replace("name: support.", "name: copy.")
        (exported.path / name).write_text(text)
    exported.commit("Copies", {})
    prompts("import", "--user", "alice", str(exported.path))
    copies = dict(
        PromptVersion.objects.filter(prompt__name__startswith="copy.").values_list(
            "prompt__name", "content_hash"
        )
    )
    assert copies == {name.replace("support.", "copy."): digest for name, digest in hashes.items()}


@pytest.mark.django_db
def test_a_prompt_without_owners_exports_to_a_file_that_imports_back(tmp_path, admin_user):
    system = Actor(user_id=None, name="system", is_admin=True, via="test")
    prompt_create(actor=system, name="support.greeting")
    version_create(actor=system, prompt_name="support.greeting", template="Hello {{name}}!\n", model="m")
    exported = Repo(tmp_path / "exported")
    prompts("export", str(exported.path))
    text = (exported.path / "support.greeting.yaml").read_text()
    exported.commit("Export", {"support.greeting.yaml": text + "model: gpt-4o\n"})

    printed = prompts("import", "--user", "root", str(exported.path))

    assert "owners" not in text
    assert "support.greeting v2 new version" in printed


@pytest.mark.django_db
def test_import_as_a_user_may_change_only_their_prompts(repo, alice, bob):
    make_prompt(alice, name="support.greeting")
    repo.commit(
        "Bob's prompt and a change to Alice's",
        {"bob.yaml": "name: bob.tips\ntemplate: tip\n", "greeting.yaml": GREETING},
    )
    before = snapshot_of_registry()

    with pytest.raises(CommandError, match="greeting.yaml: Only the owners of 'support.greeting'"):
        prompts("import", str(repo.path), "--user", "bob")
    assert snapshot_of_registry() == before

    repo.git("rm", "-q", "greeting.yaml")
    repo.commit("Only Bob's prompt", {})
    prompts("import", str(repo.path), "--user", "bob")
    tips = Prompt.objects.get(name="bob.tips")
    assert list(tips.owner_users.values_list("username", flat=True)) == ["bob"]
    assert tips.versions.get().author_name == "bob"


@pytest.mark.django_db
def test_import_as_an_unknown_user_is_refused(repo):
    repo.commit("Greeting", {"greeting.yaml": GREETING})

    with pytest.raises(CommandError, match="No active user 'mallory'"):
        prompts("import", str(repo.path), "--user", "mallory")
    assert not Prompt.objects.exists()
