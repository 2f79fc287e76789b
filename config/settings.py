"""promptramp settings: everything comes from the environment (see README, "Configuration").

With no DATABASE_URL / REDIS_URL, the embedded services started by the run and test commands
are used (their URLs are read from <PROMPTRAMP_DATA_DIR>/services.json).
"""

import ipaddress
import os
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from devstack import embedded_services

BASE_DIR = Path(__file__).resolve().parent.parent
Number = TypeVar("Number", int, float)


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def env_bool(name: str, default: bool) -> bool:
    """A yes/no setting; anything but the words below stops the start (``DEBUG=ture`` is a typo,
    not "false")."""
    value = os.environ.get(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise ImproperlyConfigured(
            f"{name}={value!r} is neither true ({', '.join(sorted(TRUE_WORDS))}) nor false "
            f"({', '.join(sorted(FALSE_WORDS - {''}))} or empty)."
        )
    return word in TRUE_WORDS


def env_number(name: str, default: Number) -> Number:
    """A number setting, of the default's type (``int`` or ``float``); a value that is not one
    stops the start."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return type(default)(value)
    except ValueError:
        what = "an integer" if isinstance(default, int) else "a number"
        raise ImproperlyConfigured(f"{name}={value!r} is not {what}.") from None


def env_names(name: str) -> dict[str, str]:
    """A ``name=url,name=url`` setting as a dict; a part that is not ``name=http(s)://…``, or
    names ``default`` (the server of the plain variables), stops the start (the message never
    shows the URLs, which may hold credentials)."""
    found: dict[str, str] = {}
    for index, part in enumerate(p.strip() for p in os.environ.get(name, "").split(",")):
        key, _, url = part.partition("=")
        if not part:
            continue
        if not key.strip() or not url.strip().startswith(("http://", "https://")):
            raise ImproperlyConfigured(f"{name}: part {index + 1} is not name=http(s)://… .")
        if key.strip() == "default":
            raise ImproperlyConfigured(f"{name}: 'default' is the server of the plain variables.")
        found[key.strip()] = url.strip()
    return found


def langfuse_project(name: str, url: str) -> dict[str, str]:
    """A Langfuse project of PROMPTRAMP_LANGFUSE_PROJECTS: its server and keys, from
    ``https://<public key>:<secret key>@host``."""
    parts = urlsplit(url)
    if not parts.username or not parts.password:
        raise ImproperlyConfigured(
            f"PROMPTRAMP_LANGFUSE_PROJECTS: project {name!r} needs its keys in the URL "
            "(https://<public key>:<secret key>@host)."
        )
    host = parts.netloc.rpartition("@")[2]
    return {
        "base_url": urlunsplit((parts.scheme, host, parts.path, "", "")),
        "public_key": unquote(parts.username),
        "secret_key": unquote(parts.password),
    }


def service_url(name: str) -> str:
    url = os.environ.get(name) or embedded_services.read_urls().get(name)
    if not url:
        raise ImproperlyConfigured(
            f"{name} is not set and no embedded services are running under "
            f"{embedded_services.data_dir()}: start them with `make run` (or "
            "`.venv/bin/python -m devstack.stack services up`), or set "
            f"{name} to an external server."
        )
    return url


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. `make run` and `make test` generate one under "
        "PROMPTRAMP_DATA_DIR; elsewhere, set SECRET_KEY in the environment."
    )


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated setting, blanks dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


if "ALLOWED_HOSTS" in os.environ:
    raise ImproperlyConfigured("ALLOWED_HOSTS is now PROMPTRAMP_ALLOWED_HOSTS (see README, Configuration).")
# The Host names this service answers to (every path: Django, the resolve fast path, the stream).
ALLOWED_HOSTS = env_list("PROMPTRAMP_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Proxies (addresses or networks) whose X-Forwarded-For names the client (core.client_address).
PROMPTRAMP_TRUSTED_PROXIES = env_list("PROMPTRAMP_TRUSTED_PROXIES")
for _proxy in PROMPTRAMP_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"PROMPTRAMP_TRUSTED_PROXIES: {_proxy!r} is not an address or a network."
        ) from None
# Behind TLS: Secure cookies, HSTS, plain HTTP redirected to HTTPS (the probes excepted); behind
# trusted proxies, X-Forwarded-Proto says whether the request came over HTTPS.
PROMPTRAMP_SECURE = env_bool("PROMPTRAMP_SECURE", False)
if PROMPTRAMP_SECURE:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    if PROMPTRAMP_TRUSTED_PROXIES:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /metrics asks for `Authorization: Bearer <token>` when set.
PROMPTRAMP_METRICS_TOKEN = os.environ.get("PROMPTRAMP_METRICS_TOKEN", "")
# Requests per second per key (per client address without one), across all processes; 0: off.
PROMPTRAMP_RATE_LIMITS = {
    "serve": env_number("PROMPTRAMP_RATE_SERVE", 20_000),  # resolve, render, snapshot, stream connects
    "events": env_number("PROMPTRAMP_RATE_EVENTS", 500),  # POST /api/v1/events batches
    "api": env_number("PROMPTRAMP_RATE_API", 50),  # every other API request
}
# Failed admin logins per 15 minutes per user name and client address; 0: off.
PROMPTRAMP_LOGIN_FAILURES = env_number("PROMPTRAMP_LOGIN_FAILURES", 10)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us: no CDN
    "audit",
    "access",
    "registry",
    "rollouts",
    "outcomes",
    "serving",
]

MIDDLEWARE = [
    "core.request_log.RequestLogMiddleware",  # first: every answer gets its line and trace id
    "django.middleware.security.SecurityMiddleware",
    "core.freshness.FreshnessMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.admin.AdminQueryMiddleware",  # the admin's pages refuse a NUL in the query string
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        service_url("DATABASE_URL"),
        conn_max_age=env_number("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL; SQLite is not supported.")
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = service_url("REDIS_URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "promptramp",
    }
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Celery work is split into queues, each with a worker process of its own under the run command
# (devstack.stack.worker_commands), so a slow webhook never delays the flush or the tick:
# `controller` (the tick, evaluations, and any task not routed), `ingest` (the outcome flush),
# `outbound` (webhooks, the Langfuse mirror). Each queue's tasks have its (soft, hard) time
# limits in seconds: an evaluation reads its sources within PROMPTRAMP_EVALUATION_DEADLINE_SECONDS,
# a webhook or mirror run claims nothing after 60 s and makes each call within 10 s.
CELERY_TASK_DEFAULT_QUEUE = "controller"
CELERY_TASK_QUEUES = {
    name: {"exchange": name, "routing_key": name} for name in ("controller", "ingest", "outbound")
}
QUEUE_TIME_LIMITS = {"controller": (60, 90), "ingest": (60, 90), "outbound": (90, 120)}
CELERY_TASK_ROUTES = {
    "rollouts.tick": {"queue": "controller"},
    "rollouts.evaluate": {"queue": "controller"},
    "rollouts.evaluate_checks": {"queue": "controller"},
    "access.store_last_used": {"queue": "controller"},
    "outcomes.flush": {"queue": "ingest"},
    "rollouts.deliver_webhooks": {"queue": "outbound"},
    "registry.mirror_langfuse": {"queue": "outbound"},
}
CELERY_TASK_ANNOTATIONS = {
    task: {
        "soft_time_limit": QUEUE_TIME_LIMITS[route["queue"]][0],
        "time_limit": QUEUE_TIME_LIMITS[route["queue"]][1],
    }
    for task, route in CELERY_TASK_ROUTES.items()
}

PROMPTRAMP_TICK_SECONDS = env_number("PROMPTRAMP_TICK_SECONDS", 15.0)
# Outcome ingest (outcomes app): how often aggregates move from Redis to PostgreSQL, how many
# event ids are remembered for de-duplication (and 24 h at most), and how many aggregates may
# wait in Redis before POST /api/v1/events sheds load with 503.
PROMPTRAMP_FLUSH_SECONDS = env_number("PROMPTRAMP_FLUSH_SECONDS", 2.0)
PROMPTRAMP_DEDUPE_MAX_IDS = env_number("PROMPTRAMP_DEDUPE_MAX_IDS", 50_000_000)
PROMPTRAMP_INGEST_MAX_PENDING = env_number("PROMPTRAMP_INGEST_MAX_PENDING", 20_000)
# Beat: a task that waited longer than its period is dropped (the next run does its work).
CELERY_BEAT_SCHEDULE = {
    "outcomes-flush": {
        "task": "outcomes.flush",
        "schedule": PROMPTRAMP_FLUSH_SECONDS,
        "options": {"expires": 10 * PROMPTRAMP_FLUSH_SECONDS},
    },
    "rollouts-tick": {
        "task": "rollouts.tick",
        "schedule": PROMPTRAMP_TICK_SECONDS,
        "options": {"expires": PROMPTRAMP_TICK_SECONDS},
    },
    "webhooks-deliver": {"task": "rollouts.deliver_webhooks", "schedule": 10.0, "options": {"expires": 10.0}},
    "langfuse-mirror": {"task": "registry.mirror_langfuse", "schedule": 10.0, "options": {"expires": 10.0}},
    "apikeys-store-last-used": {
        "task": "access.store_last_used",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}
# Where a gate's numbers come from, by gate `source` (rollouts.sources): the `ingest` source is
# the outcomes app's, which the controller finds here (rollouts does not import outcomes).
PROMPTRAMP_GATE_SOURCES = {
    "ingest": "outcomes.ingest_source.IngestSource",
    "langfuse": "rollouts.sources.langfuse.LangfuseSource",
    "prometheus": "rollouts.sources.prometheus.PrometheusSource",
}
# Who holds a prompt's `production` label so that nobody else moves it (registry.services): a
# prompt's active rollout. The registry asks them through these names (it imports no app above it).
PROMPTRAMP_PRODUCTION_HOLDERS = ["rollouts.selectors.rollout_holding_production"]
# Who follows the events of core.events (prompt.created, version.created, label.moved …), each
# writing in the transaction that emits one: the webhooks' outbox and the Langfuse mirror.
PROMPTRAMP_EVENT_FOLLOWERS = [
    "rollouts.webhooks.outbox_enqueue_event",
    "registry.langfuse_mirror.mirror_follow",
]
# Which prompts a user owns, for the keys they create themselves (access.services; the access
# layer imports nothing above it).
PROMPTRAMP_PROMPT_OWNERSHIP = "registry.selectors.prompts_matching_owned"
PROMPTRAMP_ADMIN_USER = os.environ.get("PROMPTRAMP_ADMIN_USER", "admin")
PROMPTRAMP_ADMIN_PASSWORD = os.environ.get("PROMPTRAMP_ADMIN_PASSWORD", "")
# What a serving request may pay beyond its usual latency for a sick Redis or a rebuild
# (core.redis_client, core.state_cache).
PROMPTRAMP_SERVING_WAIT_SECONDS = env_number("PROMPTRAMP_SERVING_WAIT_MS", 50.0) / 1000
# The snapshot stream (serving.stream): its process listens on STREAM_PORT; GET /api/v1/snapshot
# names it in a Link header, PROMPTRAMP_STREAM_URL when set (behind a load balancer).
PORT = env_number("PORT", 8000)
STREAM_PORT = env_number("STREAM_PORT", PORT + 1)
PROMPTRAMP_STREAM_URL = os.environ.get("PROMPTRAMP_STREAM_URL", "")
PROMPTRAMP_STREAM_KEEPALIVE_SECONDS = env_number("PROMPTRAMP_STREAM_KEEPALIVE_SECONDS", 15.0)

# Third parties. Gate sources: the Langfuse server and its keys (the names the langfuse SDK
# reads; Langfuse Cloud when no server is named), and the Prometheus server (a gate may name its
# own). Prometheus metrics of every web worker go to PROMETHEUS_MULTIPROC_DIR when it is set
# (the run command sets it): prometheus_client reads it too.
LANGFUSE_BASE_URL = os.environ.get("LANGFUSE_BASE_URL") or os.environ.get("LANGFUSE_HOST") or ""
LANGFUSE_PUBLIC_KEY = os.environ.get("LANGFUSE_PUBLIC_KEY", "")
LANGFUSE_SECRET_KEY = os.environ.get("LANGFUSE_SECRET_KEY", "")
PROMETHEUS_URL = os.environ.get("PROMETHEUS_URL", "")
# The Langfuse mirror (registry.langfuse_mirror): every version and production move of every
# prompt is mirrored to Langfuse prompt management on the server of the LANGFUSE_* variables.
PROMPTRAMP_LANGFUSE_MIRROR = env_bool("PROMPTRAMP_LANGFUSE_MIRROR", False)
if PROMPTRAMP_LANGFUSE_MIRROR and not (LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY):
    raise ImproperlyConfigured(
        "PROMPTRAMP_LANGFUSE_MIRROR=1 needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY "
        "(and LANGFUSE_BASE_URL or LANGFUSE_HOST for a self-hosted server)."
    )
# Gates name their servers, never URLs: prometheus gates' `server` from
# PROMPTRAMP_PROMETHEUS_SERVERS ("name=url,…"; PROMETHEUS_URL is `default`), langfuse gates'
# `project` from PROMPTRAMP_LANGFUSE_PROJECTS ("name=https://public:secret@host,…"; the LANGFUSE_*
# variables are `default`). An evaluation reads all its gates' sources within
# PROMPTRAMP_EVALUATION_DEADLINE_SECONDS.
PROMPTRAMP_PROMETHEUS_SERVERS = env_names("PROMPTRAMP_PROMETHEUS_SERVERS")
PROMPTRAMP_LANGFUSE_PROJECTS = {
    name: langfuse_project(name, url) for name, url in env_names("PROMPTRAMP_LANGFUSE_PROJECTS").items()
}
PROMPTRAMP_EVALUATION_DEADLINE_SECONDS = env_number("PROMPTRAMP_EVALUATION_DEADLINE_SECONDS", 10.0)
# Webhook URLs must lead to public addresses (rollouts.webhooks), unless this is set: receivers
# on the operator's own network.
PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = env_bool("PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE", False)
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "admin:login"

DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["access.permissions.ScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["access.throttling.KeyRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # drf-spectacular's, adding to each operation the 401, 429 and 503 that access control answers.
    "DEFAULT_SCHEMA_CLASS": "access.api.schema.AccessAutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    # JSON only: the admin is the HTML interface, /api/v1/docs/ the API's (asking for HTML is a 406).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api_input.JSONBodyParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "promptramp API",
    "DESCRIPTION": "Prompt registry, runtime serving and rollout controller.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The snapshot stream has no route in the web server: its path is written into the schema.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "serving.api.schema.stream_path_described",
    ],
    # Two fields named "arm": what a caller was served, and what an override serves.
    "ENUM_NAME_OVERRIDES": {
        "ArmEnum": ["baseline", "candidate", "production", "override"],
        "OverrideArmEnum": ["candidate", "baseline"],
    },
}

# Logs (core.log_lines): one line per record, per request (core.request_log) and per Celery task
# (core.task_log), on stderr; JSON unless PROMPTRAMP_LOG_FORMAT=text (what `make run` sets).
PROMPTRAMP_LOG_FORMAT = os.environ.get("PROMPTRAMP_LOG_FORMAT", "json").strip().lower() or "json"
if PROMPTRAMP_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"PROMPTRAMP_LOG_FORMAT={PROMPTRAMP_LOG_FORMAT!r} is neither json nor text.")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "lines": {
            "class": "core.log_lines.LineHandler",
            "line_format": PROMPTRAMP_LOG_FORMAT,
            "requests": LOG_LEVEL in ("DEBUG", "INFO"),  # a line per request and task
        }
    },
    "root": {"handlers": ["lines"], "level": LOG_LEVEL},
    # Celery's "succeeded" line shows a task's result: core.task_log's line stands for it.
    "loggers": {"celery.app.trace": {"level": "WARNING"}},
}
# OpenTelemetry traces (core.tracing) when an OTLP endpoint is named; the exporter reads the
# other OTEL_* variables itself.
PROMPTRAMP_TRACING = bool(
    os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
)
PROMPTRAMP_TRACING_SERVICE = os.environ.get("OTEL_SERVICE_NAME", "").strip() or "promptramp"
# Celery keeps settings.LOGGING rather than installing its own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
