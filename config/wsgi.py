import gc
import os

import django
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

# All need Django set up; tracing, if on, before the handler loads the middleware.
from core.state_cache import warm_state_caches  # noqa: E402
from core.tracing import tracing_start  # noqa: E402
from serving.fast_path import resolve_fast_path  # noqa: E402

tracing_start()
django_application = WSGIHandler()
application = resolve_fast_path(django_application)
warm_state_caches()
# What is loaded by now lives as long as the process: out of the collector's way, so that its
# collections, which a busy worker runs every few dozen requests, look only at what requests made.
gc.freeze()
