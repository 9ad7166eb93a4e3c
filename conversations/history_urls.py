"""The Twilio history import page, under Reports (config/urls.py mounts it there)."""

from django.urls import path

from conversations import history_views

app_name = "history"

urlpatterns = [
    path("", history_views.history_page, name="page"),
    path("start/", history_views.history_start, name="start"),
    path("<int:import_id>/", history_views.history_progress, name="import"),
]
