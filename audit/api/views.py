"""The audit log, for admins: read-only (there is no way to change or remove an entry). An admin
key limited to prompts (its ``prompts``, access.selectors.KeyInfo: this layer reads it by name)
sees only the entries about those prompts."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from audit.actions import AuditAction
from audit.api.serializers import AuditEntrySerializer
from audit.selectors import audit_list
from core.api_input import query_text
from core.api_schema import error_responses
from core.prompt_limits import prompts_q


class AuditListView(GenericAPIView):  # type: ignore[type-arg]
    serializer_class = AuditEntrySerializer
    required_scopes = dict.fromkeys(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"), "admin")

    @extend_schema(
        summary="The audit log, newest first (admin)",
        parameters=[
            OpenApiParameter("prompt", str, description="entries about this prompt"),
            OpenApiParameter("actor", str, description="entries by this user name (or 'system')"),
            OpenApiParameter("action", str, description=f"one of {', '.join(AuditAction.values)}"),
        ],
        responses={200: AuditEntrySerializer(many=True), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        entries = audit_list(
            prompt=query_text(request, "prompt"),
            actor=query_text(request, "actor"),
            action=query_text(request, "action"),
        ).filter(prompts_q(getattr(request.auth, "prompts", None), "prompt_name"))
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)
