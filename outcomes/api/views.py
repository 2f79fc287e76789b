from __future__ import annotations

import time

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import prompt_limits_of
from core.api_schema import ErrorSerializer
from core.metrics import (
    event_batches_refused_total,
    events_accepted,
    events_duplicate,
    events_unmatched,
    sdk_exposures_total,
)
from outcomes.api.serializers import EventBatchSerializer, IngestResultSerializer
from outcomes.errors import BatchTooLarge
from outcomes.services import events_ingest
from outcomes.validation import MAX_BODY_BYTES


class EventsView(APIView):
    required_scopes = {"POST": "ingest"}
    throttle_scope = "events"

    def handle_exception(self, exc: Exception) -> Response:
        """Every refusal, from authentication and throttling on, counted by the code answered."""
        response = super().handle_exception(exc)
        error = response.data.get("error") if isinstance(response.data, dict) else None
        if isinstance(error, dict):
            event_batches_refused_total.labels(str(error.get("code"))).inc()
        return response

    @extend_schema(
        operation_id="events_report",
        summary="Report a batch of outcome events",
        request=EventBatchSerializer,
        responses={
            202: IngestResultSerializer,
            400: OpenApiResponse(ErrorSerializer, "invalid events: details list index, field, reason"),
            403: OpenApiResponse(
                ErrorSerializer,
                "prompt_not_allowed: events (or late scores' calls) of other prompts, listed as in a 400",
            ),
            413: OpenApiResponse(ErrorSerializer, "body over 4 MiB or more than 1000 events"),
            503: OpenApiResponse(ErrorSerializer, "Redis unavailable or backlog too long; see Retry-After"),
        },
        examples=[
            OpenApiExample(
                "An outcome of a candidate",
                request_only=True,
                value={
                    "events": [
                        {
                            "event_id": "7d0c6f5e-1b7a-4c3e-9a52-2f1e8b9d4c11",
                            "prompt": "support.answer",
                            "version": 2,
                            "rollout_id": 7,
                            "arm": "candidate",
                            "latency_ms": 812.5,
                            "error": False,
                            "error_type": None,
                            "cost_usd": 0.0021,
                            "input_tokens": 350,
                            "output_tokens": 120,
                            "scores": {"helpfulness": 0.82},
                            "ts": "2026-11-22T18:00:00Z",
                        }
                    ]
                },
            ),
            OpenApiExample(
                "A late score of that call",
                request_only=True,
                value={
                    "events": [
                        {
                            "event_id": "0b6a9d6e-5f0e-4a51-8a7e-6f3f1c2d9e80",
                            "of_event": "7d0c6f5e-1b7a-4c3e-9a52-2f1e8b9d4c11",
                            "scores": {"judge_accuracy": 0.9},
                        }
                    ]
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            raise BatchTooLarge(f"The body is {length} bytes; at most {MAX_BODY_BYTES} are accepted.")
        result = events_ingest(body=request.body, now=time.time(), prompts=prompt_limits_of(request))
        events_accepted.inc(result.accepted)
        events_duplicate.inc(result.duplicates)
        events_unmatched.inc(result.unmatched)
        sdk_exposures_total.inc(result.exposures_total)
        answer = {"accepted": result.accepted, "duplicates": result.duplicates, "unmatched": result.unmatched}
        if result.exposures is not None:
            answer["exposures"] = result.exposures
        return Response(answer, status=202)
