"""Admin for organizations, their staff and their contacts.

PhoneSearchMixin is shared by every admin that holds a phone number, in all three apps.
"""

import re

from django.contrib import admin
from django.db.models import Q

from contacts.models import Contact, ContactImport, ContactImportRow, Membership, Organization
from conversations.models import Sender

# What a number typed by hand may contain besides its digits: "+1 (212) 555-0177".
PHONE_TYPED = re.compile(r"[\d\s()+.\-]+")


class PhoneSearchMixin:
    """Find a number by any run of its digits, however it is typed.

    Django's search matches each word as a substring, so the last four digits ("0177") already
    find +12125550177; a number typed with spaces or brackets is split into words that match
    nothing, so it is also compared by its digits alone.
    """

    phone_search_fields = ()

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        digits = re.sub(r"\D", "", term)
        if len(digits) >= 4 and digits != term and PHONE_TYPED.fullmatch(term):
            by_digits = Q()
            for field in self.phone_search_fields:
                by_digits |= Q(**{f"{field}__contains": digits})
            results |= queryset.filter(by_digits)
        return results, may_have_duplicates


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class SenderInline(admin.TabularInline):
    model = Sender
    extra = 0
    fields = ["label", "phone_number", "messaging_service_sid", "kind", "throughput", "is_active"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "time_zone",
        "default_region",
        "any_inbound_resubscribes",
        "created_at",
    ]
    list_filter = ["any_inbound_resubscribes", "default_region"]
    search_fields = ["name", "slug"]
    ordering = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline, SenderInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    ordering = ["organization__name", "user__username"]
    autocomplete_fields = ["user", "organization"]
    list_select_related = ["user", "organization"]


@admin.register(Contact)
class ContactAdmin(PhoneSearchMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "phone_e164",
        "phone_raw",
        "phone_status",
        "kind",
        "organization",
        "created_at",
    ]
    list_filter = ["phone_status", "kind", "communication_preference", "organization"]
    search_fields = ["phone_e164", "phone_raw", "first_name", "last_name", "email", "external_id"]
    phone_search_fields = ["phone_e164", "phone_raw"]
    # Newest first, read from the primary key: sorting every contact by name costs a full sort.
    ordering = ["-id"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    readonly_fields = ["phone_e164", "phone_status", "phone_error", "created_at", "updated_at"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # A contact's new number is audited and brings that number's state (SPEC §2), which
        # the contact's own page does; its history and conversation belong to its organization.
        if obj is not None:
            return ["organization", "phone_raw", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.set_phone(obj.phone_raw)
        super().save_model(request, obj, form, change)


@admin.register(ContactImport)
class ContactImportAdmin(admin.ModelAdmin):
    list_display = [
        "filename",
        "organization",
        "state",
        "total_rows",
        "processed_rows",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "organization"]
    search_fields = ["filename"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    list_select_related = ["organization", "created_by"]
    raw_id_fields = ["organization", "created_by"]
    # The file itself can be megabytes; its rows are listed under Contact import rows.
    exclude = ["content"]
    readonly_fields = ["state", "total_rows", "processed_rows", "counts", "error", "finished_at"]


@admin.register(ContactImportRow)
class ContactImportRowAdmin(PhoneSearchMixin, admin.ModelAdmin):
    list_display = ["contact_import", "line", "outcome", "reason", "phone_raw", "name", "contact"]
    list_filter = ["outcome"]
    search_fields = ["phone_raw", "name", "reason", "contact_import__filename"]
    phone_search_fields = ["phone_raw"]
    ordering = ["-contact_import_id", "line"]
    list_select_related = ["contact_import", "contact"]
    raw_id_fields = ["contact_import", "contact"]
    show_full_result_count = False
