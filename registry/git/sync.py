"""Prompts in git: publish the prompt files of a commit as versions (`prompts_import`), and
read the registry's production versions as prompt files (`prompt_files_export`).

An import is all or nothing: every file is read first (all problems reported together), then
everything is published in one transaction, so a bad file leaves the registry as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from core.actors import Actor
from core.errors import DomainError, ValidationFailed
from registry.git.prompt_files import PromptFile, PromptFileError, parse_prompt_file
from registry.git.repo import GitSnapshot
from registry.models import PRODUCTION, Label, Prompt
from registry.selectors import owner_names
from registry.services import UNCHANGED, prompt_create, prompt_update, version_create


@dataclass(frozen=True)
class ImportResult:
    path: str
    prompt: str
    version: int
    outcome: str  # "new prompt", "new version", "unchanged" or "already imported"

    @property
    def published(self) -> bool:
        return self.outcome in ("new prompt", "new version")


def prompts_import(*, actor: Actor, snapshot: GitSnapshot, update_owners: bool = False) -> list[ImportResult]:
    """Publish each prompt file of ``snapshot`` as a version recording its commit and tag.

    A file whose content equals the prompt's latest version publishes nothing, and a prompt
    that already has a version from this commit is left alone: importing a commit again creates
    nothing. A new prompt is created with the file's kind, description, tags and owners; on an
    existing prompt, the description and tags a file declares replace the registry's, and the
    owners it declares only with ``update_owners`` (so whoever can write a file cannot take a
    prompt over on an import made for something else).
    """
    files = _read_files(snapshot)
    with transaction.atomic():
        return [_import_file(actor, prompt_file, snapshot, update_owners) for prompt_file in files]


def _read_files(snapshot: GitSnapshot) -> list[PromptFile]:
    files: list[PromptFile] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path, text in snapshot.files:
        try:
            prompt_file = parse_prompt_file(path, text)
        except PromptFileError as error:
            problems.append(str(error))
            continue
        if prompt_file.name in seen:
            first = seen[prompt_file.name]
            problems.append(f"{path}: prompt {prompt_file.name!r} is also declared in {first}")
            continue
        seen[prompt_file.name] = path
        files.append(prompt_file)
    if problems:
        raise ValidationFailed(
            f"{len(problems)} prompt file(s) cannot be imported; nothing was imported.",
            details={"problems": problems},
        )
    return files


def _import_file(
    actor: Actor, prompt_file: PromptFile, snapshot: GitSnapshot, update_owners: bool
) -> ImportResult:
    def result(version: int, outcome: str) -> ImportResult:
        return ImportResult(prompt_file.path, prompt_file.name, version, outcome)

    try:
        prompt = Prompt.objects.filter(name=prompt_file.name).first()
        if prompt is None:
            prompt_create(
                actor=actor,
                name=prompt_file.name,
                kind=prompt_file.kind,
                description=prompt_file.description or "",
                tags=prompt_file.tags or [],
                owners=prompt_file.owners or [],
            )
        else:
            already = prompt.versions.filter(git_commit=snapshot.commit).order_by("-version").first()
            if already is not None:
                return result(already.version, "already imported")
            if prompt.kind != prompt_file.kind:
                kinds = f"'{prompt.name}' is a {prompt.kind} prompt, the file says {prompt_file.kind}."
                raise ValidationFailed(kinds)
        version, created = version_create(
            actor=actor,
            prompt_name=prompt_file.name,
            template=prompt_file.template,
            messages=prompt_file.messages,
            model=prompt_file.model,
            config=prompt_file.config,
            message=snapshot.subject,
            git_commit=snapshot.commit,
            git_tag=snapshot.tag,
        )
        if prompt is not None:  # after publishing: new owners may not include the importing user
            prompt_update(
                actor=actor,
                prompt_name=prompt.name,
                description=_declared(prompt_file.description),
                tags=_declared(prompt_file.tags),
                owners=_declared(prompt_file.owners) if update_owners else UNCHANGED,
            )
    except DomainError as error:
        message = f"{prompt_file.path}: {error.message} Nothing was imported."
        raise type(error)(message, details=error.details, code=error.code) from error
    if prompt is None:
        return result(version.version, "new prompt")
    return result(version.version, "new version" if created else "unchanged")


def _declared(value: Any) -> Any:
    return UNCHANGED if value is None else value


def prompt_files_export() -> list[PromptFile]:
    """Every prompt's production version as a prompt file named ``<prompt name>.yaml`` (an
    empty description, tags or owners is left out: a file declaring no owners could not be
    imported)."""
    labels = (
        Label.objects.filter(name=PRODUCTION)
        .select_related("prompt", "version")
        .prefetch_related("prompt__owner_users", "prompt__owner_groups")
        .order_by("prompt__name")
    )
    return [
        PromptFile(
            path=f"{label.prompt.name}.yaml",
            name=label.prompt.name,
            kind=label.prompt.kind,
            template=label.version.template,
            messages=label.version.messages,
            model=label.version.model,
            config=label.version.config,
            description=label.prompt.description or None,
            tags=list(label.prompt.tags) or None,
            owners=owner_names(label.prompt) or None,
        )
        for label in labels
    ]
