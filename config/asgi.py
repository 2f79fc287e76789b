"""The stream process's application: the snapshot stream (serving.stream_asgi) in front of
Django's ASGI handler. Run by uvicorn beside the web server (devstack.stack.stream_command)."""

import os

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

# Both need Django set up; tracing, if on, before the handler loads the middleware.
from core.tracing import tracing_start  # noqa: E402
from serving.stream_asgi import snapshot_stream_path  # noqa: E402

tracing_start()
django_application = ASGIHandler()
application = snapshot_stream_path(django_application)
