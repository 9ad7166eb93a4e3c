from django.contrib import admin

from contacts.models import Contact, ContactImport, ContactImportRow, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "time_zone", "default_region", "reasonable_means_opt_out"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]
    list_select_related = ["user", "organization"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "phone_e164", "phone_raw", "phone_status", "kind", "organization"]
    list_filter = ["phone_status", "kind", "communication_preference", "organization"]
    # A phone is found by any part of it, e.g. its last four digits.
    search_fields = ["first_name", "last_name", "email", "phone_e164", "phone_raw", "external_id"]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
    readonly_fields = ["phone_e164", "phone_status", "phone_error", "created_at", "updated_at"]
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        # The E.164 form and parse status always follow the number as entered.
        obj.set_phone(obj.phone_raw)
        super().save_model(request, obj, form, change)


class ContactImportRowInline(admin.TabularInline):
    model = ContactImportRow
    extra = 0
    can_delete = False
    fields = ["line", "outcome", "reason", "phone_raw", "name", "contact"]
    readonly_fields = fields
    max_num = 0


@admin.register(ContactImport)
class ContactImportAdmin(admin.ModelAdmin):
    list_display = [
        "filename",
        "organization",
        "state",
        "total_rows",
        "processed_rows",
        "created_at",
    ]
    list_filter = ["state", "organization"]
    search_fields = ["filename"]
    exclude = ["content"]
    readonly_fields = ["counts", "error", "finished_at"]
    raw_id_fields = ["organization", "created_by"]


@admin.register(ContactImportRow)
class ContactImportRowAdmin(admin.ModelAdmin):
    list_display = ["contact_import", "line", "outcome", "reason", "phone_raw", "name"]
    list_filter = ["outcome"]
    search_fields = ["phone_raw", "name", "reason"]
    raw_id_fields = ["contact_import", "contact"]
    list_select_related = ["contact_import"]
    show_full_result_count = False
