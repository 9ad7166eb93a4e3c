from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/twilio/", include("conversations.webhook_urls")),
    path("conversations/", include("conversations.urls")),
    path("broadcasts/", include("conversations.broadcast_urls")),
    # Before the reports' own /reports/<name>/: the history import is reached from Reports.
    path("reports/twilio-history/", include("conversations.history_urls")),
    path("", include("deliverability.urls")),
    path("", include("contacts.urls")),
]
