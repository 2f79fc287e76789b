"""Rollout and webhook endpoints: parse, call one service or selector, answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import actor_of, granted_scopes, prompt_check, prompt_limits_of
from core.api_input import query_text
from core.api_schema import error_responses
from core.errors import ValidationFailed
from core.prompt_limits import prompts_q
from rollouts import checks, selectors, services, webhooks
from rollouts.api.serializers import (
    ActionRequest,
    CheckReportRequest,
    RolloutCreateRequest,
    RolloutDetailOut,
    RolloutOut,
    WebhookCreateRequest,
    WebhookOut,
    rollout_detail_json,
    webhook_json,
)
from rollouts.as_json import rollout_json
from rollouts.models import Rollout

READ_ERRORS = error_responses(403, 404)
LIST_ERRORS = error_responses(400, 403, 404)
WRITE_ERRORS = error_responses(400, 403, 404, 409, 413, 415)


def _page(request: Request, view: APIView, items: Any, to_json: Callable[[Any], Any]) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response([to_json(item) for item in page or []])


def _body(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class PromptRolloutsView(APIView):
    required_scopes = {"GET": "read", "POST": "write"}
    pagination_class = PageNumberPagination  # what the schema describes

    @extend_schema(responses={200: RolloutOut(many=True), **READ_ERRORS}, operation_id="prompt_rollouts_list")
    def get(self, request: Request, name: str) -> Response:
        return _page(request, self, selectors.rollout_list_for_prompt(prompt_name=name), rollout_json)

    @extend_schema(
        request=RolloutCreateRequest,
        responses={201: RolloutOut, **WRITE_ERRORS},
        examples=[
            OpenApiExample(
                "A manual step at 50 percent and one gate",
                request_only=True,
                value={
                    "candidate_version": 2,
                    "plan": [
                        {"percent": 10, "min_duration_s": 600, "min_samples": 200},
                        {"percent": 50, "min_duration_s": 600, "min_samples": 200, "approval": "manual"},
                        {"percent": 100, "min_duration_s": 0, "min_samples": 0},
                    ],
                    "gates": [
                        {
                            "metric": "error_rate",
                            "source": "ingest",
                            "max_increase_abs": 0.01,
                            "min_samples": 200,
                            "on_fail": "rollback",
                        }
                    ],
                    "traffic": {"on_fail": "rollback"},
                    "start": True,
                },
            )
        ],
    )
    def post(self, request: Request, name: str) -> Response:
        data = _body(RolloutCreateRequest, request)
        rollout = services.rollout_create(actor=actor_of(request), prompt_name=name, **data)
        return Response(rollout_json(selectors.rollout_get(rollout.pk)), status=201)


class RolloutsView(APIView):
    required_scopes = {"GET": "read"}
    pagination_class = PageNumberPagination  # what the schema describes

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=Rollout.State.values),
            OpenApiParameter("prompt", str),
        ],
        responses={200: RolloutOut(many=True), **LIST_ERRORS},
        operation_id="rollouts_list",
    )
    def get(self, request: Request) -> Response:
        state = query_text(request, "state") or None
        if state is not None and state not in Rollout.State.values:
            raise ValidationFailed(
                f"'state' must be one of {', '.join(Rollout.State.values)}.", details={"state": state}
            )
        rollouts = selectors.rollout_list(state=state, prompt=query_text(request, "prompt"))
        rollouts = rollouts.filter(prompts_q(prompt_limits_of(request), "prompt__name"))
        return _page(request, self, rollouts, rollout_json)


class RolloutView(APIView):
    required_scopes = {"GET": "read"}

    @extend_schema(responses={200: RolloutDetailOut, **READ_ERRORS})
    def get(self, request: Request, rollout_id: int) -> Response:
        prompt_check(request, selectors.rollout_get(rollout_id).prompt.name)
        detail = selectors.rollout_get_with_stats(rollout_id)
        return Response(rollout_detail_json(detail))


ACTIONS: dict[str, Callable[..., Rollout]] = {
    "start": services.rollout_start,
    "pause": services.rollout_pause,
    "resume": services.rollout_resume,
    "promote": services.rollout_promote,
    "rollback": services.rollout_rollback,
    "abort": services.rollout_abort,
}


class RolloutActionView(APIView):
    required_scopes = {"POST": "write"}
    action_name = ""

    @extend_schema(request=ActionRequest, responses={200: RolloutOut, **WRITE_ERRORS})
    def post(self, request: Request, rollout_id: int) -> Response:
        data = _body(ActionRequest, request)
        prompt_check(request, selectors.rollout_get(rollout_id).prompt.name)
        action = ACTIONS[self.action_name]
        rollout = action(
            actor=actor_of(request),
            rollout_id=rollout_id,
            reason=data["reason"],
            expected_state=data["expected_state"],
            expected_step_index=data["expected_step_index"],
        )
        return Response(rollout_json(selectors.rollout_get(rollout.pk)))


class RolloutChecksView(APIView):
    """CI reports a required check: a key with the ``checks`` scope (limited to prompts like any
    key), or ``write`` on the prompt."""

    required_scopes = {"POST": ("checks", "write")}

    @extend_schema(
        request=CheckReportRequest,
        responses={200: RolloutOut, **WRITE_ERRORS},
        examples=[
            OpenApiExample(
                "The offline evaluation passed",
                request_only=True,
                value={
                    "name": "offline-eval",
                    "status": "pass",
                    "detail": "helpfulness 0.84 vs 0.81 on 500 dataset items",
                    "url": "https://ci.example.com/runs/4711",
                },
            )
        ],
    )
    def post(self, request: Request, rollout_id: int) -> Response:
        data = _body(CheckReportRequest, request)
        prompt_check(request, selectors.rollout_get(rollout_id).prompt.name)
        rollout = checks.rollout_check_report(
            actor=actor_of(request),
            rollout_id=rollout_id,
            as_owner="checks" not in granted_scopes(request),
            **data,
        )
        return Response(rollout_json(selectors.rollout_get(rollout.pk)))


class WebhooksView(APIView):
    required_scopes = {"GET": "admin", "POST": "admin"}
    pagination_class = PageNumberPagination  # what the schema describes

    @extend_schema(responses={200: WebhookOut(many=True), **READ_ERRORS}, operation_id="webhooks_list")
    def get(self, request: Request) -> Response:
        return _page(request, self, selectors.webhook_list(), webhook_json)

    @extend_schema(
        request=WebhookCreateRequest, responses={201: WebhookOut, **error_responses(400, 403, 413, 415)}
    )
    def post(self, request: Request) -> Response:
        data = _body(WebhookCreateRequest, request)
        webhook = webhooks.webhook_create(actor=actor_of(request), **data)
        return Response(webhook_json(webhook), status=201)


class WebhookView(APIView):
    required_scopes = {"GET": "admin", "DELETE": "admin"}

    @extend_schema(responses={200: WebhookOut, **READ_ERRORS})
    def get(self, request: Request, webhook_id: int) -> Response:
        return Response(webhook_json(selectors.webhook_get(webhook_id)))

    @extend_schema(responses={204: None, **READ_ERRORS})
    def delete(self, request: Request, webhook_id: int) -> Response:
        webhooks.webhook_delete(actor=actor_of(request), webhook_id=webhook_id)
        return Response(status=204)
