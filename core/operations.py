"""The operators' endpoints: /healthz (the process is up), /readyz (PostgreSQL and Redis answer),
/metrics (Prometheus text: every web worker's samples added up when PROMETHEUS_MULTIPROC_DIR is
set, see ``core.metrics``, then the series of the whole service, see ``core.cluster_metrics``; with
PROMPTRAMP_METRICS_TOKEN set, only for ``Authorization: Bearer <token>``)."""

import hmac

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from redis.exceptions import RedisError

from core.cluster_metrics import ClusterCollector
from core.errors import error_body
from core.metrics import request_metrics
from core.redis_client import get_redis
from core.state_cache import StateCache

_cluster = CollectorRegistry(auto_describe=False)
_cluster.register(ClusterCollector())


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as error:
        checks["database"] = f"unavailable: {type(error).__name__}"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except RedisError as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def metrics(request: HttpRequest) -> HttpResponse:
    token: str = settings.PROMPTRAMP_METRICS_TOKEN
    given = request.META.get("HTTP_AUTHORIZATION", "")
    if token and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return JsonResponse(
            error_body("unauthenticated", "/metrics needs Authorization: Bearer <PROMPTRAMP_METRICS_TOKEN>."),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    for cache in StateCache.instances:
        cache.report_reads()
    request_metrics.flush()  # this worker's serving counts up to now (the others' within a second)
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    text = generate_latest(registry) + generate_latest(_cluster)
    return HttpResponse(text, content_type=CONTENT_TYPE_LATEST)
