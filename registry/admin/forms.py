"""The registry's admin forms. They only parse what a person typed (JSON, comma-separated lists);
the rules of the registry are checked by registry.services, whose errors the views show."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms

from core.admin import parse_json
from registry.models import Prompt, PromptVersion

MONOSPACE = {"class": "vLargeTextField pr-code", "spellcheck": "false"}
SECOND_APPROVER_HELP = (
    "Starting a rollout, promoting one past a manual step and moving <code>production</code> must then "
    "be done by someone other than the author of the version it serves."
)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _one_newline_style(text: str) -> str:
    """Browsers send a textarea's lines joined by CRLF: keep the registry's LF."""
    return text.replace("\r\n", "\n")


class VersionChoicesForm(forms.Form):
    """A form whose ``version_fields`` each choose one of a prompt's versions, given as
    ``versions``: (number, commit message) pairs, newest first."""

    version_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, versions: Sequence[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(number, f"v{number} — {text}") for number, text in versions]
        for name in self.version_fields:
            field = self.fields[name]
            assert isinstance(field, forms.TypedChoiceField)
            field.choices = choices


class PromptCreateForm(forms.Form):
    name = forms.CharField(
        max_length=128,
        help_text="a-z, 0-9, '.', '_' and '-'; dots group prompts, e.g. <code>support.answer</code>.",
    )
    kind = forms.ChoiceField(
        choices=Prompt.Kind.choices,
        widget=forms.RadioSelect,
        initial=Prompt.Kind.TEXT,
        help_text="text: one template · chat: a list of messages.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    tags = forms.CharField(required=False, help_text="Separated by commas, e.g. <code>support, email</code>.")
    owners = forms.CharField(
        required=False,
        help_text="User names and <code>group:NAME</code>, separated by commas. You are an owner too. "
        "Only owners (and admins) publish versions and move labels.",
    )

    require_second_approver = forms.BooleanField(
        label="Require a second approver",
        required=False,
        help_text=SECOND_APPROVER_HELP,
    )

    def clean_tags(self) -> list[str]:
        return comma_list(self.cleaned_data["tags"])

    def clean_owners(self) -> list[str]:
        return comma_list(self.cleaned_data["owners"])


class SecondApproverForm(forms.Form):
    require_second_approver = forms.BooleanField(
        label="Require a second approver",
        required=False,
        help_text=SECOND_APPROVER_HELP + " Owners turn it on; only an admin turns it off.",
    )


class VersionCreateForm(forms.Form):
    """A new version: the template (text prompts) or the messages as JSON (chat prompts)."""

    template = forms.CharField(strip=False, widget=forms.Textarea(attrs={**MONOSPACE, "rows": 12}))
    messages = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={**MONOSPACE, "rows": 14}),
        help_text='A JSON list of <code>{"role": "…", "content": "…"}</code> objects.',
    )
    model = forms.CharField(required=False, max_length=200)
    config = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={**MONOSPACE, "rows": 5}),
        help_text='A JSON object, e.g. <code>{"temperature": 0.2, "max_tokens": 500}</code>.',
    )
    message = forms.CharField(
        label="Commit message",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
        help_text="Why this version: it is shown in the history and the audit log.",
    )
    labels = forms.CharField(
        label="Labels to apply",
        required=False,
        help_text="Separated by commas, e.g. <code>staging</code>. The first version of a prompt "
        "gets <code>production</code> by itself.",
    )

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["messages" if kind == Prompt.Kind.TEXT else "template"]

    @staticmethod
    def initial_from(version: PromptVersion | None, kind: str) -> dict[str, str]:
        """The form's fields filled from a version (the latest, usually), or empty for a first one."""
        if version is None:
            starter = [{"role": "system", "content": ""}]
            return {"messages": json.dumps(starter, indent=2), "config": "{}"} if kind == "chat" else {}
        initial = {
            "model": version.model,
            "config": json.dumps(version.config, indent=2, sort_keys=True, ensure_ascii=False),
        }
        if kind == Prompt.Kind.CHAT:
            initial["messages"] = json.dumps(version.messages, indent=2, ensure_ascii=False)
        else:
            initial["template"] = version.template or ""
        return initial

    def clean_template(self) -> str:
        return _one_newline_style(self.cleaned_data["template"])

    def clean_messages(self) -> Any:
        return parse_json(_one_newline_style(self.cleaned_data["messages"]), "Messages")

    def clean_config(self) -> Any:
        text = self.cleaned_data["config"].strip()
        return parse_json(text, "Config") if text else {}

    def clean_labels(self) -> list[str]:
        return comma_list(self.cleaned_data["labels"])


class LabelMoveForm(VersionChoicesForm):
    label = forms.CharField(
        max_length=64,
        widget=forms.TextInput(attrs={"list": "label-names", "autocomplete": "off"}),
        help_text="An existing label or a new one (a-z, 0-9, '_' and '-').",
    )
    version = forms.TypedChoiceField(coerce=int)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
        help_text="Required: it is kept in the audit log.",
    )

    version_fields = ("version",)


class DiffChoiceForm(VersionChoicesForm):
    """Which two versions to compare (a GET form: it changes nothing)."""

    old = forms.TypedChoiceField(coerce=int, label="Compare")
    new = forms.TypedChoiceField(coerce=int, label="with")

    version_fields = ("old", "new")
