"""The second approver: on a prompt with ``require_second_approver``, whoever starts a rollout,
promotes one past a manual step, moves ``production`` by hand or serves a version through an
override must be someone other than the author of the version that is then served (the
candidate; the version production moves to; the override's version). The registry's services
(a production move), the rollouts' (start, promote) and the overrides' (create) ask it here.

What needs no second approver: the prompt's first ``production`` (nothing was served before),
a move to the version production already points at (nothing changes), an override of the
version production serves now (it pins callers to what was approved), and the rollout
controller's own moves (a success was approved when its rollout was started; a rollback returns
to the version that was production), an override of an arm rather than a version (it follows
the active rollout) and the end of an override.

Who counts as "someone other": a user (the system acting on its own approves nothing) whose
account is not the author's and does not carry the author's name, so an account re-created under
a deleted author's name is still the author. A version whose author's account was deleted keeps
the author's name; any other user may approve it.
"""

from __future__ import annotations

from core.actors import Actor
from registry.errors import SecondApproverRequired
from registry.models import PRODUCTION, Label, Prompt, PromptVersion


def is_second_approver(actor: Actor, version: PromptVersion) -> bool:
    """Whether ``actor`` is a user other than the author of ``version``."""
    if actor.user_id is None:
        return False
    if version.author_id is not None and version.author_id == actor.user_id:
        return False
    return actor.name != version.author_name


def ensure_second_approver(*, actor: Actor, prompt: Prompt, version: PromptVersion, action: str) -> None:
    """SecondApproverRequired (403) when ``prompt`` requires a second approver and ``actor`` may
    not ``action`` (words completing "someone other than the author must …") for ``version``."""
    if not prompt.require_second_approver or is_second_approver(actor, version):
        return
    author = version.author_name or "an unknown author"
    who = "a user other than its author" if actor.user_id is None else f"someone other than {author}"
    raise SecondApproverRequired(
        f"'{prompt.name}' requires a second approver: v{version.version} was published by {author}, "
        f"so {who} must {action}. Nothing was changed.",
        details={"prompt": prompt.name, "version": version.version, "author": version.author_name or None},
    )


def ensure_production_move_approved(*, actor: Actor, prompt: Prompt, version: PromptVersion) -> None:
    """A person's move of ``production`` to ``version`` (a label move, a version published with
    the label): a second approver's, unless it is the prompt's first production or moves nothing."""
    if not prompt.require_second_approver:
        return
    current = _production_version_id(prompt)
    if current is None or current == version.pk:
        return
    ensure_second_approver(
        actor=actor, prompt=prompt, version=version, action=f"make v{version.version} production"
    )


def ensure_override_approved(*, actor: Actor, prompt: Prompt, version: PromptVersion) -> None:
    """An override serving ``version``: a second approver's, unless ``version`` is the one
    production serves now (pinning callers to it serves them nothing unapproved)."""
    if not prompt.require_second_approver or _production_version_id(prompt) == version.pk:
        return
    ensure_second_approver(
        actor=actor, prompt=prompt, version=version, action=f"serve v{version.version} through an override"
    )


def _production_version_id(prompt: Prompt) -> int | None:
    version_id: int | None = (
        Label.objects.filter(prompt=prompt, name=PRODUCTION).values_list("version_id", flat=True).first()
    )
    return version_id
