"""Admin for senders, conversations, messages, provider events and broadcasts.

Messages and their events are records of what the provider was asked and answered: they can be
viewed, never edited (a status moves only forward, through callbacks; see SPEC §6).
"""

from django.contrib import admin, messages

from contacts.admin import PhoneSearchMixin
from conversations import events
from conversations.event_requests import request_event_processing
from conversations.models import (
    Broadcast,
    Conversation,
    HistoryImport,
    HistorySeen,
    Message,
    MessageEvent,
    Sender,
)
from deliverability.admin import ReadOnlyAdmin


@admin.register(Sender)
class SenderAdmin(PhoneSearchMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "phone_number",
        "messaging_service_sid",
        "kind",
        "throughput",
        "is_active",
        "broadcasts_paused_until",
        "organization",
    ]
    list_filter = ["kind", "is_active", "organization"]
    search_fields = ["label", "phone_number", "messaging_service_sid"]
    phone_search_fields = ["phone_number"]
    ordering = ["organization__name", "id"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]


@admin.register(Conversation)
class ConversationAdmin(PhoneSearchMixin, admin.ModelAdmin):
    list_display = [
        "contact",
        "organization",
        "last_message_at",
        "last_message_direction",
        "last_message_preview",
        "unread_count",
    ]
    list_filter = ["organization"]
    search_fields = [
        "contact__phone_e164",
        "contact__phone_raw",
        "contact__first_name",
        "contact__last_name",
    ]
    phone_search_fields = ["contact__phone_e164", "contact__phone_raw"]
    ordering = ["-last_message_at", "-id"]
    list_select_related = ["contact", "organization"]
    raw_id_fields = ["organization", "contact"]
    show_full_result_count = False


@admin.register(Message)
class MessageAdmin(PhoneSearchMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "direction",
        "to_number",
        "from_number",
        "status",
        "skip_reason",
        "error_code",
        "sender",
        "organization",
    ]
    list_filter = ["direction", "status", "skip_reason", "auto_reply", "is_test", "organization"]
    search_fields = [
        "to_number",
        "from_number",
        "provider_sid",
        "conversation__contact__first_name",
        "conversation__contact__last_name",
    ]
    phone_search_fields = ["to_number", "from_number"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_select_related = ["organization", "sender"]
    raw_id_fields = ["organization", "conversation", "sender", "broadcast", "sent_by"]
    show_full_result_count = False


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin):
    list_display = [
        "received_at",
        "kind",
        "provider_sid",
        "status",
        "error_code",
        "processed_at",
        "attempts",
        "not_applied",
        "outcome",
    ]
    # No filter on status: it has no choices, and listing its values would scan the table.
    # "Not applied" lists what processing gave up on (a partial index keeps it quick).
    list_filter = ["not_applied", "kind", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["provider_sid", "idempotency_key"]
    ordering = ["-received_at", "-id"]
    raw_id_fields = ["message", "organization"]
    show_full_result_count = False
    actions = ["retry"]

    def has_retry_permission(self, request):
        return request.user.is_superuser

    @admin.action(description="Retry the selected events that did not apply", permissions=["retry"])
    def retry(self, request, queryset):
        queued = events.events_retry(list(queryset.values_list("pk", flat=True)))
        if queued:
            request_event_processing()
        self.message_user(
            request,
            f"{queued} event(s) queued to be applied again."
            if queued
            else "None of the selected events was given up on: nothing to retry.",
            messages.SUCCESS if queued else messages.WARNING,
        )


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "organization",
        "sender",
        "audience",
        "state",
        "recipient_count",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "audience", "organization"]
    search_fields = ["name", "body"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_select_related = ["organization", "sender"]
    raw_id_fields = ["organization", "sender", "created_by"]
    # Sending, holding and canceling go through the Broadcasts page, which paces and records them.
    readonly_fields = [
        "state",
        "hold_reason",
        "resume_at",
        "recipient_count",
        "skipped_counts",
        "started_at",
        "finished_at",
        "canceled_at",
    ]


@admin.register(HistoryImport)
class HistoryImportAdmin(ReadOnlyAdmin):
    """Imports of the Twilio message history: what was read and applied (the page under
    Reports starts and resumes them)."""

    list_display = [
        "organization",
        "first_day",
        "last_day",
        "state",
        "cursor_day",
        "messages_read",
        "messages_applied",
        "started_at",
    ]
    list_filter = ["state"]
    list_select_related = ["organization"]


@admin.register(HistorySeen)
class HistorySeenAdmin(ReadOnlyAdmin):
    """The history's messages already applied, once per organization and message SID."""

    list_display = ["sid", "organization", "history_import"]
    search_fields = ["=sid"]
    list_select_related = ["organization", "history_import"]
