"""`manage.py prompts import PATH --user NAME [--ref REF] [--update-owners]` and
`manage.py prompts export PATH`: prompts in git.

Import publishes the prompt files (``*.yaml``, ``*.yml``) found under PATH — a git repository
or a folder in one — as they are at REF (default HEAD), each version recording the commit, its
tag and its subject; all or nothing; as the user named by ``--user``, whose ownership is checked
like the API's. The owners a file declares change an existing prompt's only with
``--update-owners``. Export writes each prompt's production version to ``PATH/<name>.yaml``, in
the format import reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from core.errors import DomainError
from registry.git.prompt_files import dump_prompt_file
from registry.git.repo import GitError, read_snapshot
from registry.git.sync import prompt_files_export, prompts_import

VIA = "command:prompts import"


class Command(BaseCommand):
    help = "Prompts in git: `import PATH [--ref REF]` publishes prompt files; `export PATH` writes them."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        reading = commands.add_parser("import", help="publish the prompt files under PATH at REF as versions")
        reading.add_argument("path", help="a git repository, or a folder in one")
        reading.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
        reading.add_argument(
            "--user",
            required=True,
            help="act as this user: the versions and audit entries are theirs, only their prompts can change",
        )
        reading.add_argument(
            "--update-owners",
            action="store_true",
            help="let the owners the files declare replace an existing prompt's (default: new prompts only)",
        )
        writing = commands.add_parser("export", help="write every production version to PATH/<name>.yaml")
        writing.add_argument("path", help="the folder to write into (created if missing)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["command"] == "import":
            self._import(options["path"], options["ref"], _actor(options["user"]), options["update_owners"])
        else:
            self._export(Path(options["path"]))

    def _import(self, path: str, ref: str, actor: Actor, update_owners: bool) -> None:
        try:
            snapshot = read_snapshot(path, ref)
        except GitError as error:
            raise CommandError(str(error)) from None
        try:
            results = prompts_import(actor=actor, snapshot=snapshot, update_owners=update_owners)
        except DomainError as error:
            problems = error.details.get("problems", []) if isinstance(error.details, dict) else []
            raise CommandError("\n".join([error.message, *problems])) from None
        tag = f" (tag {snapshot.tag})" if snapshot.tag else ""
        for r in results:
            self.stdout.write(f"{r.path}: {r.prompt} v{r.version} {r.outcome}")
        published = sum(r.published for r in results)
        self.stdout.write(
            f"{published} version(s) published from {len(results)} file(s) at {snapshot.commit[:12]}{tag}"
        )

    def _export(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        files = prompt_files_export()
        for prompt_file in files:
            (folder / prompt_file.path).write_text(dump_prompt_file(prompt_file), encoding="utf-8")
        self.stdout.write(f"{len(files)} prompt file(s) written to {folder}")


def _actor(username: str) -> Actor:
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"No active user {username!r}.")
    return Actor.of_user(user, via=VIA)
