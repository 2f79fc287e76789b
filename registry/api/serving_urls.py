from django.urls import path

from registry.api import serving_views

urlpatterns = [
    path("prompts/<str:name>/resolve", serving_views.ResolveView.as_view(), name="prompt-resolve"),
    path("prompts/<str:name>/render", serving_views.RenderView.as_view(), name="prompt-render"),
    path("snapshot", serving_views.SnapshotView.as_view(), name="snapshot"),
]
