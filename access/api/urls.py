from django.urls import path

from access.api import schema, views

# Registers the bearer scheme with drf-spectacular before any schema is generated.
assert schema.ApiKeyAuthenticationScheme

urlpatterns = [
    path("keys", views.ApiKeyListView.as_view(), name="apikey-list"),
    path("keys/<int:key_id>", views.ApiKeyDetailView.as_view(), name="apikey-detail"),
]
