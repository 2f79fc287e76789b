"""API keys: list and revoke (admins), create (the key is shown once): admins any key, anyone
with ``write`` a read or ingest key for themselves limited to prompts they own."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeyRevokeSerializer,
    ApiKeySerializer,
)
from access.permissions import actor_of, prompt_limits_of
from access.selectors import apikey_list
from access.services import apikey_create, apikey_revoke
from core.api_input import json_object
from core.api_schema import error_responses

ADMIN_ONLY = dict.fromkeys(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"), "admin")


class ApiKeyListView(GenericAPIView):  # type: ignore[type-arg]
    required_scopes = {**ADMIN_ONLY, "POST": "write"}
    serializer_class = ApiKeyCreateSerializer  # what OPTIONS describes

    @extend_schema(
        summary="List API keys (admin)",
        responses={200: ApiKeySerializer(many=True), **error_responses(403, 404)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(apikey_list())
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(
        summary="Create an API key; the key is in the answer, once",
        description="Admins create any key. With `write`, a `read` or `ingest` key for yourself "
        "whose `prompts` match only prompts you own: each prefix is expanded to the names of the "
        "prompts you own that it matches (403 `prompt_not_allowed` if it matches another's).",
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 403, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = json_object(request, ApiKeyCreateSerializer)
        key, raw = apikey_create(
            actor=actor_of(request),
            name=body.get("name"),
            user=body.get("user", request.user.get_username()),
            scopes=body.get("scopes"),
            prompts=body.get("prompts"),
            within=prompt_limits_of(request),
        )
        return Response({**ApiKeySerializer(key).data, "key": raw}, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    required_scopes = ADMIN_ONLY

    @extend_schema(
        summary="Revoke an API key (admin)",
        request=ApiKeyRevokeSerializer,
        responses={200: ApiKeySerializer, **error_responses(400, 403, 404, 413, 415)},
    )
    def delete(self, request: Request, key_id: int) -> Response:
        body = json_object(request, ApiKeyRevokeSerializer)
        key = apikey_revoke(actor=actor_of(request), key_id=key_id, reason=body.get("reason", ""))
        return Response(ApiKeySerializer(key).data)
