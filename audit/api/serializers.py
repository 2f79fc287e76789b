from __future__ import annotations

from rest_framework import serializers


class AuditEntrySerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_name", help_text="user name, or 'system'")
    via = serializers.CharField(help_text="how the actor acted: key:NAME, session, command:…")
    action = serializers.CharField(help_text="e.g. prompt.create, version.create, label.move")
    prompt = serializers.CharField(source="prompt_name")
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    reason = serializers.CharField()
    data = serializers.JSONField()
