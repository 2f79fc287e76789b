from django.urls import path

from serving.api import overrides, views

urlpatterns = [
    path("prompts/<str:name>/resolve", views.ResolveView.as_view(), name="prompt-resolve"),
    path("prompts/<str:name>/render", views.RenderView.as_view(), name="prompt-render"),
    path("prompts/<str:name>/overrides", overrides.OverridesView.as_view(), name="prompt-overrides"),
    path(
        "prompts/<str:name>/overrides/<int:override_id>",
        overrides.OverrideView.as_view(),
        name="prompt-override",
    ),
    path("snapshot", views.SnapshotView.as_view(), name="snapshot"),
]
