from django.urls import path

from registry.api import views

urlpatterns = [
    path("prompts", views.PromptListView.as_view(), name="prompt-list"),
    path("prompts/<str:name>", views.PromptDetailView.as_view(), name="prompt-detail"),
    path("prompts/<str:name>/versions", views.VersionListView.as_view(), name="version-list"),
    path(
        "prompts/<str:name>/versions/<int:number>", views.VersionDetailView.as_view(), name="version-detail"
    ),
    path(
        "prompts/<str:name>/versions/<int:number>/diff", views.VersionDiffView.as_view(), name="version-diff"
    ),
    path("prompts/<str:name>/labels/<str:label>", views.LabelView.as_view(), name="label-detail"),
]
