from django.urls import path

from conversations import webhooks

app_name = "webhooks"

urlpatterns = [
    path("status/", webhooks.status_callback, name="status"),
    path("inbound/", webhooks.inbound_message, name="inbound"),
]
