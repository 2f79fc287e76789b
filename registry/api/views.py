"""Registry management API: prompts, versions, labels. Thin: read with selectors, write with
services; errors are raised, never built here."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import actor_of, prompt_check, prompt_limits_of
from core.api_input import json_object, query_positive_int, query_text
from core.api_schema import error_responses
from core.errors import ValidationFailed
from core.prompt_limits import prompts_q
from registry.api.serializers import (
    LabelDeleteSerializer,
    LabelMoveSerializer,
    LabelSerializer,
    PromptCreateSerializer,
    PromptSerializer,
    PromptUpdateSerializer,
    VersionCreateSerializer,
    VersionDiffSerializer,
    VersionSerializer,
)
from registry.selectors import (
    prompt_detail,
    prompt_get,
    prompt_list,
    version_by_label,
    version_compare,
    version_detail,
    version_list,
)
from registry.services import label_delete, label_move, prompt_create, prompt_update, version_create
from registry.validation import validate_label_name

READ_ERRORS = error_responses(403, 404)
WRITE_ERRORS = error_responses(400, 403, 404, 409, 413, 415)


class PromptListView(GenericAPIView):  # type: ignore[type-arg]
    serializer_class = PromptCreateSerializer  # what OPTIONS describes

    @extend_schema(
        summary="List prompts",
        parameters=[
            OpenApiParameter("tag", str, description="prompts carrying this tag"),
            OpenApiParameter("owner", str, description="a user name (also through groups) or group:NAME"),
            OpenApiParameter("search", str, description="in names and descriptions, any case"),
        ],
        responses={200: PromptSerializer(many=True), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        prompts = prompt_list(
            tag=query_text(request, "tag"),
            owner=query_text(request, "owner"),
            search=query_text(request, "search"),
        ).filter(prompts_q(prompt_limits_of(request), "name"))
        page = self.paginate_queryset(prompts)
        return self.get_paginated_response(PromptSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a prompt",
        request=PromptCreateSerializer,
        responses={201: PromptSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = json_object(request, PromptCreateSerializer)
        if isinstance(body.get("name"), str):
            prompt_check(request, body["name"])
        prompt = prompt_create(actor=actor_of(request), name=body.pop("name", None), **body)
        return Response(
            PromptSerializer(prompt_detail(name=prompt.name)).data, status=status.HTTP_201_CREATED
        )


class PromptDetailView(APIView):
    @extend_schema(
        summary="A prompt, or one of its versions with ?label= or ?version=",
        parameters=[
            OpenApiParameter("label", str, description="the version this label points at ('latest' too)"),
            OpenApiParameter("version", int, description="this version number"),
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="PromptOrVersion",
                serializers=[PromptSerializer, VersionSerializer],
                resource_type_field_name=None,
            ),
            **error_responses(400, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        label = query_text(request, "label")
        number = query_positive_int(request, "version")
        if label is not None and number is not None:
            raise ValidationFailed("Ask for a label or a version, not both.")
        if label is None and number is None:
            return Response(PromptSerializer(prompt_detail(name=name)).data)
        prompt = prompt_get(name)
        if number is not None:
            version = version_detail(prompt=prompt, number=number)
        else:
            version = version_by_label(prompt=prompt, label=validate_label_name(label, allow_latest=True))
        return Response(VersionSerializer(version).data)

    @extend_schema(
        summary="Change a prompt's description, tags, owners or second approver",
        request=PromptUpdateSerializer,
        responses={200: PromptSerializer, **WRITE_ERRORS},
    )
    def patch(self, request: Request, name: str) -> Response:
        body = json_object(request, PromptUpdateSerializer)
        prompt_update(actor=actor_of(request), prompt_name=name, **body)
        return Response(PromptSerializer(prompt_detail(name=name)).data)


class VersionListView(GenericAPIView):  # type: ignore[type-arg]
    serializer_class = VersionCreateSerializer  # what OPTIONS describes

    @extend_schema(
        summary="A prompt's versions, newest first",
        responses={200: VersionSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(version_list(prompt=prompt_get(name)))
        return self.get_paginated_response(VersionSerializer(page, many=True).data)

    @extend_schema(
        summary="Publish a version",
        description="Content equal to the latest version's answers 200 with the latest version "
        "(the labels asked for are still applied); a new version answers 201.",
        request=VersionCreateSerializer,
        responses={201: VersionSerializer, 200: VersionSerializer, **WRITE_ERRORS},
        examples=[
            OpenApiExample(
                "A text version",
                request_only=True,
                value={
                    "template": "Answer {{question}} for {{customer}}",
                    "model": "gpt-4o-mini",
                    "config": {"temperature": 0.2},
                    "message": "tighter tone",
                    "git_commit": None,
                    "git_tag": None,
                    "labels": ["staging"],
                },
            )
        ],
    )
    def post(self, request: Request, name: str) -> Response:
        body = json_object(request, VersionCreateSerializer)
        version, created = version_create(actor=actor_of(request), prompt_name=name, **body)
        version = version_detail(prompt=version.prompt, number=version.version)
        return Response(
            VersionSerializer(version).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class VersionDetailView(APIView):
    """Versions are immutable: this resource has no PUT, PATCH or DELETE (405)."""

    @extend_schema(summary="One version", responses={200: VersionSerializer, **READ_ERRORS})
    def get(self, request: Request, name: str, number: int) -> Response:
        return Response(VersionSerializer(version_detail(prompt=prompt_get(name), number=number)).data)


class VersionDiffView(APIView):
    @extend_schema(
        summary="Unified diff of content and config between two versions",
        description="Above 64 Ki characters (a text's two sides together), or when matching the lines "
        "would take too long, a diff is a plain line diff and `line_diff` is true.",
        parameters=[
            OpenApiParameter(
                "against", int, description="the version to compare with (default: the one before)"
            ),
        ],
        responses={200: VersionDiffSerializer, **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, name: str, number: int) -> Response:
        against = query_positive_int(request, "against")
        if against is None:
            if number <= 1:
                raise ValidationFailed("Version 1 has no version before it: give ?against=N.")
            against = number - 1
        diff = version_compare(prompt=prompt_get(name), number=number, against=against)
        return Response(
            VersionDiffSerializer({"prompt": name, **asdict(diff), "identical": diff.identical}).data
        )


class LabelView(APIView):
    @extend_schema(
        summary="Point a label at a version",
        request=LabelMoveSerializer,
        responses={200: LabelSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, name: str, label: str) -> Response:
        body = json_object(request, LabelMoveSerializer)
        moved = label_move(
            actor=actor_of(request),
            prompt_name=name,
            label=label,
            version=body.get("version"),
            reason=body.get("reason", ""),
        )
        return Response(LabelSerializer(moved).data)

    @extend_schema(
        summary="Remove a label ('production' cannot be removed: 409)",
        request=LabelDeleteSerializer,
        responses={204: None, **WRITE_ERRORS},
    )
    def delete(self, request: Request, name: str, label: str) -> Response:
        body = json_object(request, LabelDeleteSerializer)
        label_delete(actor=actor_of(request), prompt_name=name, label=label, reason=body.get("reason", ""))
        return Response(status=status.HTTP_204_NO_CONTENT)
