import django_tables2 as tables
from django.db.models import CharField, DateTimeField, OuterRef, Subquery

from conversations.models import Message
from deliverability import catalogue
from deliverability.models import InvalidSource, NumberState, SkipReason


def with_number_state(messages, org):
    """Annotate each message with its number's state in the org (for badges and reasons)."""
    state = NumberState.objects.filter(organization=org, phone=OuterRef("to_number"))

    def field(name, output):
        return Subquery(state.values(name)[:1], output_field=output)

    return messages.annotate(
        number_invalid_source=field("invalid_source", CharField()),
        number_invalid_reason=field("invalid_reason", CharField()),
        number_opt_out_reason=field("opt_out_reason", CharField()),
        number_paused_until=field("paused_until", DateTimeField()),
    )


def failed_reason(message):
    """The Failed Reason column (SPEC §7): empty when the number was flagged by hand."""
    if message.status == Message.Status.SKIPPED:
        if message.skip_reason == SkipReason.MARKED_INVALID:
            if getattr(message, "number_invalid_source", "") == InvalidSource.AUTOMATIC:
                return message.number_invalid_reason
            return ""
        return SkipReason(message.skip_reason).label if message.skip_reason else ""
    if message.error_code is not None:
        return catalogue.describe(message.error_code).reason
    return message.error_message


class FailedMessageTable(tables.Table):
    select = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "th__input": {"data-select-all": "message", "aria-label": "Select all on this page"},
            # The bulk form stands above the table: row action forms cannot nest inside it.
            "td__input": {"name": "message", "form": "bulk-form", "aria-label": "Select"},
        },
        orderable=False,
    )
    contact = tables.TemplateColumn(
        template_name="conversations/failed_cells/contact.html",
        accessor="conversation__contact__last_name",
        verbose_name="Contact",
        order_by=("conversation__contact__last_name", "conversation__contact__first_name"),
    )
    phone = tables.TemplateColumn(
        template_name="conversations/failed_cells/phone.html",
        accessor="to_number",
        verbose_name="Phone number",
    )
    status = tables.TemplateColumn(template_name="conversations/failed_cells/status.html")
    reason = tables.Column(empty_values=(), verbose_name="Failed Reason", orderable=False)
    error_code = tables.Column(verbose_name="Error code")
    created_at = tables.DateTimeColumn(verbose_name="Date", format="M j, Y g:i A")
    actions = tables.TemplateColumn(
        template_name="conversations/failed_cells/actions.html",
        orderable=False,
        verbose_name="Actions",
        attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}},
    )

    class Meta:
        model = Message
        fields = ("select", "contact", "phone", "status", "reason", "error_code", "created_at")
        sequence = ("select", "contact", "phone", "status", "reason", "error_code", "created_at")
        order_by = "-created_at"
        template_name = "conversations/failed_table.html"
        row_attrs = {"id": lambda record: f"msg-{record.pk}"}
        attrs = {"class": "table table-sm table-hover align-middle", "id": "failed-table"}
        empty_text = "No failed or skipped messages match these filters."

    def render_reason(self, record):
        return failed_reason(record) or "—"

    def order_created_at(self, queryset, is_descending):
        order = ("-created_at", "-id") if is_descending else ("created_at", "id")
        return queryset.order_by(*order), True
