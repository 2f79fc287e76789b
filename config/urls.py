from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import operations
from core.admin import throttled_login

handler400 = "core.errors.json_400"
handler404 = "core.errors.json_404"
handler500 = "core.errors.json_500"

urlpatterns = [
    path("healthz", operations.healthz, name="healthz"),
    path("readyz", operations.readyz, name="readyz"),
    path("metrics", operations.metrics, name="metrics"),
    path("admin/login/", throttled_login(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("serving.api.urls")),
    path("api/v1/", include("registry.api.urls")),
    path("api/v1/", include("rollouts.api.urls")),
    path("api/v1/", include("outcomes.api.urls")),
    path("api/v1/", include("access.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path(
        "api/v1/docs/",
        # A page: OPTIONS would render its template without the page's context.
        SpectacularSwaggerView.as_view(
            url_name="schema", permission_classes=[], http_method_names=["get", "head"]
        ),
        name="docs",
    ),
]
