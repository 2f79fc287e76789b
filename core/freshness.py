"""Read-your-writes over HTTP: every write's 2xx answer carries ``X-Promptramp-Generation`` (the
global generation of the serving state after it), and a request carrying
``X-Promptramp-Min-Generation: N`` is answered only from state caches that have seen generation N
(``core.state_cache``). Both the Django middleware here and the WSGI fast path of resolve use
``min_generation_of``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import ValidationFailed, error_body
from core.state_cache import current_generation, min_generation, stale_read, written_generation

GENERATION_HEADER = "X-Promptramp-Generation"
MIN_GENERATION_META = "HTTP_X_PROMPTRAMP_MIN_GENERATION"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def min_generation_of(value: str) -> int:
    """The generation a request asks for: 0 when the header is absent."""
    if not value:
        return 0
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise ValidationFailed(
            "X-Promptramp-Min-Generation must be a non-negative integer.",
            details={"header": "X-Promptramp-Min-Generation"},
        )
    return int(value)


class FreshnessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            wanted = min_generation_of(request.META.get(MIN_GENERATION_META, ""))
        except ValidationFailed as error:
            return JsonResponse(error_body(error.code, error.message, error.details), status=400)
        wanted_token = min_generation.set(wanted)
        written_token = written_generation.set(None)
        stale_token = stale_read.set(False)
        try:
            response = self.get_response(request)
            if request.method not in SAFE_METHODS and 200 <= response.status_code < 300:
                generation = written_generation.get()
                if generation is None:
                    generation = current_generation()
                if generation is not None:
                    response[GENERATION_HEADER] = str(generation)
            return response
        finally:
            min_generation.reset(wanted_token)
            written_generation.reset(written_token)
            stale_read.reset(stale_token)
