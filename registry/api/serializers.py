"""Payloads of the registry management API.

Responses are built here; request serializers describe the bodies for the OpenAPI schema and name
the fields a body may hold (the services check the values).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.models import LABEL_NAME_RE, PROMPT_NAME_RE, Prompt, PromptVersion
from registry.selectors import langfuse_mirror_state, owner_names
from registry.validation import GIT_COMMIT_RE, TAG_RE

OWNER_HELP = "user names and 'group:NAME' entries"
SECOND_APPROVER_HELP = (
    "starting a rollout, promoting past a manual step and moving production need a user other than "
    "the author of the version served"
)


class MessageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    role = serializers.RegexField(r"^[a-z_]{1,32}$")
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


# --- responses --------------------------------------------------------------------------------


class PromptSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Prompt.Kind.choices)
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    owners = serializers.SerializerMethodField(help_text=OWNER_HELP)
    labels = serializers.SerializerMethodField(help_text="label name → version number")
    latest_version = serializers.IntegerField(help_text="highest version number; 0 before the first")
    require_second_approver = serializers.BooleanField(help_text=SECOND_APPROVER_HELP)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    langfuse_mirror = serializers.SerializerMethodField(
        help_text="the Langfuse mirror of this prompt: state (waiting, pending, in_sync, retrying, "
        "stopped) and reason; null when PROMPTRAMP_LANGFUSE_MIRROR is off"
    )

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_owners(self, prompt: Prompt) -> list[str]:
        return owner_names(prompt)

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_labels(self, prompt: Prompt) -> dict[str, int]:
        return {label.name: label.version.version for label in prompt.labels.all()}

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_langfuse_mirror(self, prompt: Prompt) -> dict[str, Any] | None:
        return langfuse_mirror_state(prompt)


class VersionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A version; a text prompt's carries ``template``, a chat prompt's ``messages``."""

    prompt = serializers.CharField(source="prompt.name")
    version = serializers.IntegerField()
    template = serializers.CharField(required=False, help_text="text prompts only")
    messages = MessageSerializer(many=True, required=False, help_text="chat prompts only")
    model = serializers.CharField()
    config = serializers.DictField()
    variables = serializers.ListField(child=serializers.CharField())
    author = serializers.CharField(source="author_name")
    message = serializers.CharField()
    content_hash = serializers.CharField()
    git_commit = serializers.CharField(allow_null=True)
    git_tag = serializers.CharField(allow_null=True)
    labels = serializers.SerializerMethodField(help_text="labels pointing at this version")
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_labels(self, version: PromptVersion) -> list[str]:
        return sorted(label.name for label in version.labels.all())

    def to_representation(self, instance: PromptVersion) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data.pop("messages" if instance.template is not None else "template", None)
        return data


class LabelSerializer(serializers.Serializer):  # type: ignore[type-arg]
    prompt = serializers.CharField(source="prompt.name")
    label = serializers.CharField(source="name")
    version = serializers.IntegerField(source="version.version")
    updated_at = serializers.DateTimeField()


class VersionDiffSerializer(serializers.Serializer):  # type: ignore[type-arg]
    prompt = serializers.CharField()
    from_version = serializers.IntegerField(help_text="the version compared against (?against=)")
    to_version = serializers.IntegerField()
    content_diff = serializers.CharField(help_text="unified diff of the template or messages")
    config_diff = serializers.CharField(help_text="unified diff of the config as sorted JSON")
    model_changed = serializers.BooleanField()
    from_model = serializers.CharField()
    to_model = serializers.CharField()
    identical = serializers.BooleanField()
    line_diff = serializers.BooleanField(
        help_text="true when a diff is a plain line diff: the versions are over 64 Ki characters "
        "(a text's two sides together) or too costly to match line by line, so the lines between "
        "their common first and last lines are all shown removed and added"
    )


# --- requests ---------------------------------------------------------------------------------


class PromptCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.RegexField(PROMPT_NAME_RE, max_length=128)
    kind = serializers.ChoiceField(choices=Prompt.Kind.choices, default=Prompt.Kind.TEXT)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    tags = serializers.ListField(child=serializers.RegexField(TAG_RE.pattern), required=False, max_length=50)
    owners = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=100,
        help_text=OWNER_HELP + "; the creating user is always added",
    )
    require_second_approver = serializers.BooleanField(
        required=False, default=False, help_text=SECOND_APPROVER_HELP
    )


class PromptUpdateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    tags = serializers.ListField(child=serializers.RegexField(TAG_RE.pattern), required=False, max_length=50)
    owners = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        min_length=1,
        max_length=100,
        help_text=OWNER_HELP + "; replaces the owners (owners or an admin only)",
    )
    require_second_approver = serializers.BooleanField(
        required=False, help_text=SECOND_APPROVER_HELP + "; turning it off needs an admin"
    )


class VersionCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    template = serializers.CharField(required=False, help_text="text prompts: the template")
    messages = MessageSerializer(many=True, required=False, help_text="chat prompts: the messages")
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    config = serializers.DictField(required=False, help_text="e.g. temperature, max_tokens")
    message = serializers.CharField(required=False, allow_blank=True, help_text="commit message")
    git_commit = serializers.RegexField(GIT_COMMIT_RE.pattern, required=False, allow_null=True)
    git_tag = serializers.CharField(required=False, allow_null=True, max_length=200)
    labels = serializers.ListField(
        child=serializers.RegexField(LABEL_NAME_RE),
        required=False,
        max_length=20,
        help_text="labels to point at the new version",
    )


class LabelMoveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    version = serializers.IntegerField(min_value=1)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class LabelDeleteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
