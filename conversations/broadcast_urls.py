from django.urls import path

from conversations import broadcast_views as views

app_name = "broadcasts"

urlpatterns = [
    path("", views.broadcast_list, name="list"),
    path("preview/", views.broadcast_preview, name="preview"),
    path("start/", views.broadcast_start, name="start"),
    path("sample/", views.sample_text, name="sample"),
    path("sample/<int:message_id>/", views.sample_status, name="sample_status"),
    path("<int:broadcast_id>/", views.broadcast_detail, name="detail"),
    path("<int:broadcast_id>/cancel/", views.broadcast_cancel, name="cancel"),
]
