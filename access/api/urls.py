from django.urls import path

from access.api import views

urlpatterns = [
    path("keys", views.ApiKeyListView.as_view(), name="apikey-list"),
    path("keys/<int:key_id>", views.ApiKeyDetailView.as_view(), name="apikey-detail"),
]
