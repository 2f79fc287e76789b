import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_wsgi_application()

# Both need Django set up.
from core.state_cache import warm_state_caches  # noqa: E402
from serving.fast_path import resolve_fast_path  # noqa: E402

application = resolve_fast_path(django_application)
warm_state_caches()
