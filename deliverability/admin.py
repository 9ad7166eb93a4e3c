"""Number state, opt-outs, facts and the audit trail can be viewed here, never changed (SPEC §8).

They change only through NumberState's audited transitions (deliverability/models.py), which the
pages and tasks call; an edit here would change whether a number is texted with no trace of who
did it. An organization's Lookup packages are edited here, and each change is audited in its
trail.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.db import transaction
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html

from contacts.admin import PhoneSearchMixin
from deliverability import lookup_packages
from deliverability.models import (
    LOOKUP_PACKAGE_NAMES,
    AuditEvent,
    DeactivationImport,
    LookupPackages,
    NumberFacts,
    NumberLookup,
    NumberState,
    OrgAlert,
    ReviewItem,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with view permission; no add, change, delete or bulk action."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _when(value):
    return formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT")


@admin.register(NumberState)
class NumberStateAdmin(PhoneSearchMixin, ReadOnlyAdmin):
    list_display = [
        "phone",
        "organization",
        "invalid",
        "opted_out",
        "paused_until",
        "error_streak",
        "last_error_at",
        "updated_at",
    ]
    list_filter = [
        "invalid_source",
        "opt_out_reason",
        ("paused_until", admin.EmptyFieldListFilter),
        "organization",
    ]
    search_fields = ["phone"]
    phone_search_fields = ["phone"]
    # The order of the one-state-per-org-and-number index.
    ordering = ["organization_id", "phone"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["organization", "phone", "audit_trail"]}),
        (
            "Invalid flag",
            {"fields": ["invalid_source", "invalid_code", "invalid_reason", "invalid_at"]},
        ),
        ("Opt-out", {"fields": ["opt_out_reason", "opted_out_at"]}),
        ("Pause", {"fields": ["paused_until"]}),
        (
            "Errors",
            {
                "fields": [
                    "error_streak",
                    "error_streak_times",
                    "streak_fifth_error_at",
                    "last_error_at",
                    "last_success_at",
                    "last_attempt_at",
                    "updated_at",
                ]
            },
        ),
    ]
    readonly_fields = ["audit_trail"]

    @admin.display(description="Invalid", ordering="invalid_at")
    def invalid(self, state):
        if not state.is_invalid:
            return None
        parts = [state.get_invalid_source_display(), state.invalid_code, state.invalid_reason]
        return f"{' · '.join(part for part in parts if part)} ({_when(state.invalid_at)})"

    @admin.display(description="Opted out", ordering="opted_out_at")
    def opted_out(self, state):
        if not state.is_opted_out:
            return None
        return f"{state.get_opt_out_reason_display()} ({_when(state.opted_out_at)})"

    @admin.display(description="Audit trail")
    def audit_trail(self, state):
        query = urlencode({"organization__id__exact": state.organization_id, "phone": state.phone})
        url = f"{reverse('admin:deliverability_auditevent_changelist')}?{query}"
        return format_html('<a href="{}">Every change to this number</a>', url)


@admin.register(NumberFacts)
class NumberFactsAdmin(PhoneSearchMixin, ReadOnlyAdmin):
    list_display = [
        "phone",
        "line_type",
        "carrier_name",
        "looked_up_at",
        "line_status",
        "deactivated_at",
        "last_heartbeat_at",
        "errors_since_heartbeat",
        "error_count",
        "last_error_code",
    ]
    list_filter = ["line_type", "line_status", ("deactivated_at", admin.EmptyFieldListFilter)]
    search_fields = ["phone", "carrier_name"]
    phone_search_fields = ["phone"]
    ordering = ["phone"]
    show_full_result_count = False


@admin.register(AuditEvent)
class AuditEventAdmin(PhoneSearchMixin, ReadOnlyAdmin):
    list_display = ["created_at", "organization", "phone", "action", "who", "source_page", "note"]
    list_filter = ["action", "source_page", "organization"]
    search_fields = ["phone", "note", "system_cause", "actor__username"]
    phone_search_fields = ["phone"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_select_related = ["organization", "actor"]
    raw_id_fields = ["organization", "contact", "actor"]
    show_full_result_count = False

    @admin.display(description="Who", ordering="actor__username")
    def who(self, event):
        return event.actor_label


@admin.register(ReviewItem)
class ReviewItemAdmin(PhoneSearchMixin, ReadOnlyAdmin):
    """Decided on the Review page, where each decision is audited; read-only here."""

    list_display = ["received_at", "organization", "phone", "kind", "rule", "decision", "due_at"]
    list_filter = ["kind", "decision", "rule", "organization"]
    search_fields = ["phone", "body"]
    phone_search_fields = ["phone"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-id"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization", "contact", "decided_by"]


@admin.register(OrgAlert)
class OrgAlertAdmin(admin.ModelAdmin):
    list_display = ["message", "organization", "kind", "occurrences", "last_seen_at", "resolved_at"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter), "organization"]
    search_fields = ["message", "sender_ref", "error_code"]
    ordering = ["-last_seen_at"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization", "resolved_by"]
    readonly_fields = [
        "kind",
        "sender_ref",
        "error_code",
        "occurrences",
        "created_at",
        "last_seen_at",
    ]


@admin.register(DeactivationImport)
class DeactivationImportAdmin(ReadOnlyAdmin):
    list_display = ["date", "numbers_listed", "numbers_opted_out", "imported_at"]
    date_hierarchy = "date"
    ordering = ["-date"]


@admin.register(LookupPackages)
class LookupPackagesAdmin(admin.ModelAdmin):
    """Which Lookup packages an organization pays for. Every change is audited in that
    organization's trail (who, before, after): it changes which numbers get texted."""

    list_display = ["organization", "line_type", "line_status", "reassigned", "updated_at"]
    list_filter = ["line_status", "reassigned"]
    search_fields = ["organization__name", "organization__slug"]
    ordering = ["organization__name"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    fields = ["organization", *LOOKUP_PACKAGE_NAMES, "prices"]
    readonly_fields = ["prices"]

    def get_readonly_fields(self, request, obj=None):
        # A row belongs to its organization for good: moving it would rewrite two trails.
        if obj is not None:
            return ["organization", *self.readonly_fields]
        return self.readonly_fields

    @admin.display(description="Price per lookup")
    def prices(self, obj):
        return (
            f"line type ${settings.LOOKUP_PRICE_LINE_TYPE}, "
            f"line status ${settings.LOOKUP_PRICE_LINE_STATUS}, "
            f"reassigned number ${settings.LOOKUP_PRICE_REASSIGNED} (US numbers only)"
        )

    def save_model(self, request, obj, form, change):
        before = (
            LookupPackages.objects.get(pk=obj.pk).as_dict()
            if change
            else LookupPackages(organization=obj.organization).as_dict()
        )
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            AuditEvent.objects.create(
                organization=obj.organization,
                actor=request.user,
                action=AuditEvent.Action.LOOKUP_PACKAGES,
                before=before,
                after=obj.as_dict(),
                source_page="admin",
            )
            if lookup_packages.turned_on(before, obj.as_dict()):
                # The org's numbers get what they now pay for, not only new ones.
                count = lookup_packages.lookup_org_numbers(obj.organization)
                numbers = f"{count:,} number{'' if count == 1 else 's'}"
                self.message_user(request, f"{numbers} of {obj.organization} will be looked up.")

    def delete_model(self, request, obj):
        with transaction.atomic():
            before = obj.as_dict()
            organization = obj.organization
            super().delete_model(request, obj)
            AuditEvent.objects.create(
                organization=organization,
                actor=request.user,
                action=AuditEvent.Action.LOOKUP_PACKAGES,
                before=before,
                after=LookupPackages(organization=organization).as_dict(),
                note="Back to the defaults.",
                source_page="admin",
            )

    def has_delete_permission(self, request, obj=None):
        # Deleting many rows at once would skip the audit of each: one at a time only.
        return super().has_delete_permission(request, obj) and obj is not None

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(NumberLookup)
class NumberLookupAdmin(PhoneSearchMixin, ReadOnlyAdmin):
    list_display = [
        "looked_up_at",
        "organization",
        "phone",
        "packages",
        "line_type",
        "line_status",
        "reassigned",
        "error",
    ]
    list_filter = ["paid_line_status", "paid_reassigned", "line_status", "reassigned"]
    search_fields = ["phone"]
    phone_search_fields = ["phone"]
    date_hierarchy = "looked_up_at"
    ordering = ["-looked_up_at", "-id"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    show_full_result_count = False

    @admin.display(description="Paid for")
    def packages(self, lookup):
        paid = [
            label
            for label, on in (
                ("line type", lookup.paid_line_type),
                ("line status", lookup.paid_line_status),
                ("reassigned", lookup.paid_reassigned),
            )
            if on
        ]
        return f"{', '.join(paid)} (${lookup.cost})"
