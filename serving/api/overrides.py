"""The overrides API: a prompt's overrides listed, added, and ended. Thin: the rules are in
``serving.services``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import actor_of
from core.api_input import json_object
from core.api_schema import ERROR_MEANINGS, ErrorSerializer, error_responses
from serving.selectors import override_json, override_list
from serving.services import override_create, override_delete

OVERRIDE_SCHEMA = inline_serializer(
    "Override",
    {
        "id": serializers.IntegerField(),
        "prompt": serializers.CharField(),
        "match": serializers.DictField(help_text='{"unit": …} or {"attribute": …, "value": …}'),
        "version": serializers.IntegerField(allow_null=True),
        "arm": serializers.ChoiceField(choices=["candidate", "baseline"], allow_null=True),
        "reason": serializers.CharField(),
        "expires_at": serializers.DateTimeField(allow_null=True),
        "active": serializers.BooleanField(help_text="false once expired"),
        "created_by": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
    },
)


class OverrideCreateRequest(serializers.Serializer[Any]):
    match = serializers.DictField(help_text='{"unit": "qa-7"} or {"attribute": "tenant", "value": "acme"}')
    version = serializers.IntegerField(required=False, help_text="serve this version (or give arm)")
    arm = serializers.ChoiceField(
        choices=["candidate", "baseline"],
        required=False,
        help_text="serve this arm of whichever rollout is active (production when none)",
    )
    reason = serializers.CharField(required=False, allow_blank=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class OverrideDeleteRequest(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True)


class OverridesView(APIView):
    required_scopes = {"GET": "read", "POST": "write"}

    @extend_schema(
        summary="A prompt's overrides, newest first (expired ones until the next add)",
        responses={
            200: inline_serializer(
                "OverrideList", {"overrides": serializers.ListField(child=OVERRIDE_SCHEMA)}
            ),
            **error_responses(403, 404),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        now = timezone.now()
        return Response({"overrides": [override_json(o, now=now) for o in override_list(prompt_name=name)]})

    @extend_schema(
        summary="Serve a unit, or callers with an attribute value, a version or a rollout arm",
        request=OverrideCreateRequest,
        responses={
            201: OVERRIDE_SCHEMA,
            **error_responses(400, 404, 409, 413, 415),
            403: OpenApiResponse(
                response=ErrorSerializer,
                description=f"{ERROR_MEANINGS[403]} Or second_approver_required: the prompt requires "
                "a second approver and the user wrote the version the override would serve (an arm, or "
                "the version production serves now, needs none).",
            ),
        },
        examples=[
            OpenApiExample(
                "QA sees the candidate",
                request_only=True,
                value={"match": {"unit": "qa-7"}, "arm": "candidate", "reason": "QA before exposure"},
            ),
            OpenApiExample(
                "A tenant stays on version 3",
                request_only=True,
                value={
                    "match": {"attribute": "tenant", "value": "acme"},
                    "version": 3,
                    "reason": "contract freeze",
                    "expires_at": "2026-12-31T18:00:00Z",
                },
            ),
        ],
    )
    def post(self, request: Request, name: str) -> Response:
        body = json_object(request, OverrideCreateRequest)
        override = override_create(
            actor=actor_of(request),
            prompt_name=name,
            match=body.get("match"),
            version=body.get("version"),
            arm=body.get("arm"),
            reason=body.get("reason", ""),
            expires_at=body.get("expires_at"),
        )
        return Response(override_json(override, now=timezone.now()), status=status.HTTP_201_CREATED)


class OverrideView(APIView):
    required_scopes = {"DELETE": "write"}

    @extend_schema(
        summary="End an override now",
        request=OverrideDeleteRequest,
        responses={204: None, **error_responses(400, 403, 404, 413, 415)},
    )
    def delete(self, request: Request, name: str, override_id: int) -> Response:
        body = json_object(request, OverrideDeleteRequest)
        override_delete(
            actor=actor_of(request), prompt_name=name, override_id=override_id, reason=body.get("reason", "")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
