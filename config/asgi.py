"""The stream process's application: the snapshot stream (serving.stream_asgi) in front of
Django's ASGI handler. Run by uvicorn beside the web server (devstack.stack.stream_command)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

# Needs Django set up.
from serving.stream_asgi import snapshot_stream_path  # noqa: E402

application = snapshot_stream_path(django_application)
