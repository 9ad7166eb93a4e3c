"""Number state, opt-outs, facts and the audit trail are read-only here (SPEC §8): they change
only through the audited actions of the pages and tasks."""

from django.contrib import admin

from deliverability.models import AuditEvent, DeactivationImport, NumberFacts, NumberState, OrgAlert


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(NumberState)
class NumberStateAdmin(ReadOnlyAdmin):
    list_display = [
        "phone",
        "organization",
        "invalid_source",
        "invalid_reason",
        "opt_out_reason",
        "opted_out_at",
        "paused_until",
        "error_streak",
    ]
    list_filter = ["invalid_source", "opt_out_reason", "organization"]
    search_fields = ["phone"]
    list_select_related = ["organization"]


@admin.register(NumberFacts)
class NumberFactsAdmin(ReadOnlyAdmin):
    list_display = [
        "phone",
        "line_type",
        "carrier_name",
        "looked_up_at",
        "deactivated_at",
        "last_heartbeat_at",
        "errors_since_heartbeat",
    ]
    list_filter = ["line_type"]
    search_fields = ["phone", "carrier_name"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "phone",
        "action",
        "actor_label",
        "source_page",
        "note",
    ]
    list_filter = ["action", "source_page", "organization"]
    search_fields = ["phone", "note", "actor__username", "system_cause"]
    list_select_related = ["organization", "actor"]
    date_hierarchy = "created_at"


@admin.register(OrgAlert)
class OrgAlertAdmin(admin.ModelAdmin):
    list_display = ["message", "organization", "kind", "occurrences", "last_seen_at", "resolved_at"]
    list_filter = ["kind", "organization"]
    search_fields = ["message", "sender_ref", "error_code"]
    readonly_fields = ["occurrences", "created_at", "last_seen_at"]
    raw_id_fields = ["organization", "resolved_by"]


@admin.register(DeactivationImport)
class DeactivationImportAdmin(ReadOnlyAdmin):
    list_display = ["date", "numbers_listed", "numbers_opted_out", "imported_at"]
