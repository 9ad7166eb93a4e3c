from django.urls import path

from conversations import review_views, views

app_name = "conversations"

urlpatterns = [
    path("", views.conversation_list, name="list"),
    path("<int:conversation_id>/", views.conversation_detail, name="detail"),
    path("<int:conversation_id>/thread/", views.thread, name="thread"),
    path("<int:conversation_id>/updates/", views.thread_updates, name="thread_updates"),
    path("<int:conversation_id>/read/", views.mark_read, name="mark_read"),
    path("<int:conversation_id>/send/", views.send, name="send"),
    path("<int:conversation_id>/simulate-reply/", views.simulate_reply, name="simulate_reply"),
    path("compose-hints/", views.compose_hints, name="compose_hints"),
]

urlpatterns += [
    path("failed/", views.failed_log, name="failed"),
    path("failed/bulk/", views.failed_bulk, name="failed_bulk"),
    path("failed/export.csv", views.failed_export, name="failed_export"),
    path("failed/<int:message_id>/<slug:action>/", views.failed_action, name="failed_action"),
]

urlpatterns += [
    path("review/", review_views.review_queue, name="review"),
    path("review/<int:item_id>/decide/", review_views.review_decide, name="review_decide"),
    path("review/<int:item_id>/undo/", review_views.review_undo, name="review_undo"),
    path("alerts/<int:alert_id>/resolve/", views.alert_resolve, name="alert_resolve"),
]
