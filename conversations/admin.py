from django.contrib import admin

from conversations.models import Broadcast, Conversation, Message, MessageEvent, Sender


@admin.register(Sender)
class SenderAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "phone_number",
        "messaging_service_sid",
        "kind",
        "throughput",
        "organization",
        "is_active",
    ]
    list_filter = ["kind", "is_active", "organization"]
    search_fields = ["label", "phone_number", "messaging_service_sid"]
    list_select_related = ["organization"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["contact", "organization", "last_message_at", "unread_count"]
    list_filter = ["organization"]
    search_fields = ["contact__first_name", "contact__last_name", "contact__phone_e164"]
    raw_id_fields = ["contact", "organization"]
    list_select_related = ["contact", "organization"]
    show_full_result_count = False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "direction",
        "to_number",
        "from_number",
        "status",
        "skip_reason",
        "error_code",
        "organization",
    ]
    list_filter = ["direction", "status", "skip_reason", "is_test", "organization"]
    search_fields = ["to_number", "from_number", "provider_sid", "body"]
    raw_id_fields = ["organization", "conversation", "sender", "broadcast", "sent_by"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = ["provider_sid", "status", "dispatch", "claimed_at", "attempts"]


@admin.register(MessageEvent)
class MessageEventAdmin(admin.ModelAdmin):
    """Provider payloads as they came: evidence, never edited."""

    list_display = [
        "received_at",
        "kind",
        "provider_sid",
        "status",
        "error_code",
        "processed_at",
        "outcome",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["provider_sid", "idempotency_key"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = ["__str__", "organization", "sender", "state", "recipient_count", "created_at"]
    list_filter = ["state", "audience", "organization"]
    search_fields = ["name", "body"]
    raw_id_fields = ["organization", "sender", "created_by"]
    readonly_fields = ["skipped_counts", "started_at", "finished_at", "canceled_at"]
