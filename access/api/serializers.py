from __future__ import annotations

from rest_framework import serializers

from access.models import SCOPES


class ApiKeySerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A key as listed: never the key itself, only its first characters."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    user = serializers.CharField(source="user.username")
    prefix = serializers.CharField(help_text="the key's first characters, to recognise it")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES))
    prompts = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        help_text="the prompts it may touch; null: every prompt",
    )
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="the key, shown this once and never stored")


class ApiKeyCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=100)
    user = serializers.CharField(required=False, help_text="user name; default: the caller")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES), min_length=1)
    prompts = serializers.ListField(
        child=serializers.CharField(max_length=130),
        required=False,
        allow_null=True,
        min_length=1,
        help_text="prompt names or prefixes ending in '*' (e.g. support.*); absent: every prompt",
    )


class ApiKeyRevokeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
