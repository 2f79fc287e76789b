from django.urls import path

from serving.api import views

urlpatterns = [
    path("prompts/<str:name>/resolve", views.ResolveView.as_view(), name="prompt-resolve"),
    path("prompts/<str:name>/render", views.RenderView.as_view(), name="prompt-render"),
    path("snapshot", views.SnapshotView.as_view(), name="snapshot"),
]
