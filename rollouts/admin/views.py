"""The rollout pages beyond Django's own: start a rollout of a prompt's version, the live page
(and its refreshing part), and the actions on a rollout. Each change calls one service with the
logged-in user as actor (via "admin"); a DomainError comes back on the form, or as a message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from core.admin import admin_actor, domain_error_text, form_page
from core.errors import DomainError, ValidationFailed
from registry.admin.views import owner_note, version_choices
from registry.approvals import is_second_approver
from registry.models import PRODUCTION, Prompt
from registry.selectors import actor_owns
from rollouts import services
from rollouts.admin.forms import ActionForm, PromptChoiceForm, RolloutStartForm
from rollouts.admin.live_page import live_page
from rollouts.as_json import shadow_percent
from rollouts.figures import percent_value
from rollouts.models import Rollout
from rollouts.plan import Plan

REFRESH_SECONDS = 5
RUN_ROLLOUTS = "run its rollouts"
MAX_PROMPT_NAMES = 500
S = Rollout.State


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    service: Callable[..., Rollout]
    states: frozenset[str]
    help: str
    danger: bool = False


ACTIONS = {
    action.name: action
    for action in (
        Action(
            "start",
            "Start",
            services.rollout_start,
            frozenset({S.PENDING}),
            "Send the first step's share of users to the candidate.",
        ),
        Action(
            "pause",
            "Pause",
            services.rollout_pause,
            frozenset({S.RUNNING}),
            "Keep the split as it is and stop evaluating until resumed.",
        ),
        Action(
            "resume",
            "Resume",
            services.rollout_resume,
            frozenset({S.PAUSED}),
            "Evaluate again: this step's clock and statistics start over.",
        ),
        Action(
            "promote",
            "Promote",
            services.rollout_promote,
            frozenset({S.RUNNING, S.PAUSED}),
            "Go to the next step now, past its wait, its samples and a manual approval, "
            "but never past a failing gate.",
        ),
        Action(
            "rollback",
            "Roll back",
            services.rollout_rollback,
            frozenset({S.RUNNING, S.PAUSED}),
            "End the rollout: every user is back on the baseline at once.",
            danger=True,
        ),
        Action(
            "abort",
            "Abort",
            services.rollout_abort,
            frozenset({S.PENDING, S.RUNNING, S.PAUSED}),
            "End the rollout without a verdict: every user is back on the baseline.",
            danger=True,
        ),
    )
}


def rollout_url(rollout: Rollout) -> str:
    return reverse("admin:rollouts_rollout_change", args=[rollout.pk])


# --- start a rollout ------------------------------------------------------------------------


def rollout_new(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The start form of a prompt's rollout (``?prompt=NAME&version=N``); without a known
    prompt, a form asking which one."""
    name = request.GET.get("prompt", "").strip()
    prompt = Prompt.objects.filter(name=name).first() if name else None
    if prompt is None:
        return _choose_prompt(request, model_admin, name)
    production = prompt.labels.filter(name=PRODUCTION).values_list("version__version", flat=True).first()
    versions = version_choices(prompt, excluding=production)
    status = 200
    if request.method == "POST":
        form = RolloutStartForm(request.POST, versions=versions)
        if form.is_valid():
            try:
                rollout = _create(request, prompt, form.cleaned_data)
            except DomainError as error:
                _show_error(form, error)
                status = error.status_code
            else:
                model_admin.message_user(request, _created_text(rollout), messages.SUCCESS)
                return HttpResponseRedirect(rollout_url(rollout))
    else:
        wanted = request.GET.get("version", "")
        numbers = [number for number, _ in versions]
        initial = int(wanted) if wanted.isdigit() and int(wanted) in numbers else (numbers[:1] or [None])[0]
        form = RolloutStartForm(
            initial={**RolloutStartForm.defaults(), "candidate_version": initial}, versions=versions
        )
    active = Rollout.objects.filter(prompt=prompt, state__in=Rollout.ACTIVE_STATES).first()
    return form_page(
        request,
        model_admin,
        form=form,
        title=f"Start a rollout of {prompt.name}",
        submit_label="Create rollout",
        owner_note=owner_note(request, prompt, they_may=RUN_ROLLOUTS),
        status=status,
        template="admin/rollouts/rollout/start.html",
        extra={"prompt": prompt, "production": production, "active_rollout": active},
    )


def _create(request: HttpRequest, prompt: Prompt, data: dict[str, Any]) -> Rollout:
    return services.rollout_create(
        actor=admin_actor(request),
        prompt_name=prompt.name,
        candidate_version=data["candidate_version"],
        plan=data["plan"],
        gates=data["gates"],
        traffic={"on_fail": data["traffic_on_fail"] or None},
        start=data["start"],
        reason=data["reason"],
    )


def _show_error(form: RolloutStartForm, error: DomainError) -> None:
    """A plan or gate the engine refused goes on its field; any other error above the form."""
    field = error.details.get("field", "") if isinstance(error.details, dict) else ""
    target = next((name for name in ("plan", "gates") if field.startswith(name)), None)
    if isinstance(error, ValidationFailed) and target:
        form.add_error(target, error.message)
    else:
        form.add_error(None, domain_error_text(error))


def _created_text(rollout: Rollout) -> str:
    what = f"Rollout #{rollout.pk} of {rollout.prompt.name}"
    shadow = shadow_percent(rollout.plan, rollout.step_index, rollout.state)
    if shadow is not None:
        return (
            f"{what} started in its shadow step: everyone gets v{rollout.baseline.version}, and "
            f"v{rollout.candidate.version} runs unseen for {shadow}% of units."
        )
    if rollout.state == S.RUNNING:
        share = percent_value(rollout.percent)
        return (
            f"{what} started: v{rollout.candidate.version} serves {share}% of users, "
            f"v{rollout.baseline.version} the rest."
        )
    return f"{what} created. It is pending: everyone gets v{rollout.baseline.version} until you start it."


def _choose_prompt(request: HttpRequest, model_admin: admin.ModelAdmin, name: str) -> HttpResponse:
    form = PromptChoiceForm(request.GET if name else None)
    if name and form.is_valid():
        form.add_error("prompt", f"There is no prompt named “{name}”.")
    names = (Prompt.objects.filter(labels__name=PRODUCTION).order_by("name").values_list("name", flat=True))[
        :MAX_PROMPT_NAMES
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Start a rollout",
        "form": form,
        "prompt_names": list(names),
    }
    return TemplateResponse(
        request, "admin/rollouts/rollout/choose_prompt.html", context, status=404 if name else 200
    )


# --- the live page --------------------------------------------------------------------------


def live(request: HttpRequest, model_admin: admin.ModelAdmin, rollout: Rollout) -> HttpResponse:
    context = _live_context(request, rollout)
    owned = actor_owns(admin_actor(request), rollout.prompt)
    actions = [
        _action_button(action, rollout) for action in ACTIONS.values() if rollout.state in action.states
    ]
    context.update(
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.opts,
            "title": f"Rollout #{rollout.pk} of {rollout.prompt.name}",
            "actions": actions if owned else [],
            "owner_note": owner_note(request, rollout.prompt, they_may=RUN_ROLLOUTS) if actions else "",
            "approver_note": _approver_note(request, rollout) if owned and actions else "",
        }
    )
    return TemplateResponse(request, "admin/rollouts/rollout/live.html", context)


def _approver_note(request: HttpRequest, rollout: Rollout) -> str:
    """Why the logged-in user may not start the rollout or promote it past a manual step (empty
    when they may, or the prompt needs no second approver): the buttons would refuse."""
    if not rollout.prompt.require_second_approver or is_second_approver(
        admin_actor(request), rollout.candidate
    ):
        return ""
    author = rollout.candidate.author_name or "an unknown author"
    return (
        f"“{rollout.prompt.name}” requires a second approver: v{rollout.candidate.version} was published by "
        f"{author}, so someone else must start this rollout and promote it past a manual step."
    )


def live_part(request: HttpRequest, model_admin: admin.ModelAdmin, rollout: Rollout) -> HttpResponse:
    """The part of the live page that refreshes itself (the page's script fetches it)."""
    response = TemplateResponse(
        request, "admin/rollouts/rollout/live_part.html", _live_context(request, rollout)
    )
    response["Cache-Control"] = "no-store"
    return response


def _live_context(request: HttpRequest, rollout: Rollout) -> dict[str, Any]:
    page = live_page(rollout.pk, now=timezone.now())
    return {
        "live": page,
        "rollout": page.rollout,
        "percent": percent_value(page.rollout.percent),
        "refresh_url": reverse("admin:rollouts_rollout_live", args=[rollout.pk]),
        "refresh_seconds": REFRESH_SECONDS,
    }


def _action_button(action: Action, rollout: Rollout) -> dict[str, Any]:
    label, confirm = action.label, f"{action.label} the rollout"
    if action.name == "promote":
        plan, index = rollout.plan, rollout.step_index
        if index + 1 < len(plan):
            confirm = f"Promote to {Plan.from_json(plan).steps[index + 1].label}"
        else:
            confirm = f"Promote: make v{rollout.candidate.version} production"
    elif action.name == "rollback":
        confirm = f"Roll back to v{rollout.baseline.version}"
    elif action.name == "start":
        confirm = f"Start: {Plan.from_json(rollout.plan).steps[0].label} to v{rollout.candidate.version}"
    return {
        "name": action.name,
        "label": label,
        "confirm": confirm,
        "help": action.help,
        "danger": action.danger,
        "url": reverse("admin:rollouts_rollout_action", args=[rollout.pk, action.name]),
        "expected_state": rollout.state,
        "expected_step_index": rollout.step_index,
    }


# --- actions --------------------------------------------------------------------------------


def act(request: HttpRequest, model_admin: admin.ModelAdmin, rollout: Rollout, action: str) -> HttpResponse:
    """POST: one action on the rollout through its service; the outcome comes back as a message
    on the live page."""
    chosen = ACTIONS.get(action)
    if chosen is None:
        raise Http404(f"No action “{action}”.")
    form = ActionForm(request.POST)
    if not form.is_valid():
        model_admin.message_user(request, _form_error_text(form), messages.ERROR)
        return HttpResponseRedirect(rollout_url(rollout))
    try:
        done = chosen.service(
            actor=admin_actor(request),
            rollout_id=rollout.pk,
            reason=form.cleaned_data["reason"],
            expected_state=form.cleaned_data["expected_state"] or None,
            expected_step_index=form.cleaned_data["expected_step_index"],
        )
    except DomainError as error:
        model_admin.message_user(
            request, f"Could not {chosen.label.lower()}: {error.message}", messages.ERROR
        )
    else:
        model_admin.message_user(request, _done_text(action, done), messages.SUCCESS)
    return HttpResponseRedirect(rollout_url(rollout))


def _form_error_text(form: ActionForm) -> str:
    if "reason" in form.errors:
        return form.refusal()
    return "The action's form is damaged: reload the page and try again."


def _done_text(name: str, rollout: Rollout) -> str:
    baseline, candidate, percent = (
        rollout.baseline.version,
        rollout.candidate.version,
        percent_value(rollout.percent),
    )
    if name == "start":
        return f"Started: v{candidate} serves {percent}% of users."
    if name == "pause":
        return f"Paused at {percent}%: the split stays and nothing is evaluated until you resume."
    if name == "resume":
        return f"Resumed at {percent}%: this step's clock and statistics start over."
    if name == "promote" and rollout.state == S.SUCCEEDED:
        return f"Promoted: v{candidate} is production."
    if name == "promote":
        step = f"step {rollout.step_index + 1} of {len(rollout.plan)}"
        return f"Promoted to {step}: v{candidate} serves {percent}% of users."
    if name == "rollback":
        return f"Rolled back: every user is on v{baseline} again."
    return f"Aborted: every user is on v{baseline}."
