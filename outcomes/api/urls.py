from django.urls import path

from outcomes.api.views import EventsView

urlpatterns = [
    path("events", EventsView.as_view(), name="events"),
]
