import django_tables2 as tables
from django.db.models import CharField, DateTimeField, OuterRef, Q, Subquery
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from contacts.models import Contact
from conversations import status as lifecycle
from conversations.models import Message
from conversations.templatetags.reachable import status_class
from deliverability import catalogue, eligibility
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


def with_retry_check(messages, org):
    """Annotate each message with `retry_skip_reason`: why a retry to its contact's number would
    be skipped now (the send path's own pre-send checks), or None when a retry can go out."""
    return eligibility.annotate_skip_reason(
        messages,
        org=org,
        phone_ref="conversation__contact__phone_e164",
        valid_phone=Q(conversation__contact__phone_status=Contact.PhoneStatus.VALID),
        name="retry_skip_reason",
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


BADGE_INVALID = mark_safe('<span class="badge text-bg-danger">Invalid</span>')
BADGE_OPTED_OUT = mark_safe('<span class="badge text-bg-secondary">Opted out</span>')
BADGE_PAUSED = mark_safe('<span class="badge text-bg-warning">Paused</span>')

ROW_ACTIONS = [
    # (action, label, offered when)
    ("mark-invalid", "Mark Phone as Invalid", lambda m: not m.number_invalid_source),
    ("mark-valid", "Mark Phone as Valid", lambda m: m.number_invalid_source == "manual"),
    ("opt-out", "Opt out", lambda m: not m.number_opt_out_reason),
]


class FailedMessageTable(tables.Table):
    """The Failed & Disabled log. Cells are built with format_html, not one template render per
    cell: at 50 rows a page that is the difference between 20 ms and 300 ms."""

    select = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "th__input": {"data-select-all": "message", "aria-label": "Select all on this page"},
            # The bulk form stands above the table: row action forms cannot nest inside it.
            "td__input": {"name": "message", "form": "bulk-form", "aria-label": "Select"},
        },
        orderable=False,
    )
    contact = tables.Column(
        accessor="conversation__contact__last_name",
        verbose_name="Contact",
        order_by=("conversation__contact__last_name", "conversation__contact__first_name"),
    )
    phone = tables.Column(accessor="to_number", verbose_name="Phone number")
    status = tables.Column()
    reason = tables.Column(empty_values=(), verbose_name="Failed Reason", orderable=False)
    error_code = tables.Column(verbose_name="Error code")
    created_at = tables.DateTimeColumn(verbose_name="Date", format="M j, Y g:i A")
    actions = tables.Column(
        empty_values=(),
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

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = timezone.now()
        if request is not None:
            self.request = request

    def render_contact(self, record):
        url = reverse("conversations:detail", args=[record.conversation_id])
        return format_html('<a href="{}">{}</a>', url, record.conversation.contact)

    def render_phone(self, record):
        badges = []
        if record.number_invalid_source:
            badges.append(BADGE_INVALID)
        if record.number_opt_out_reason:
            badges.append(BADGE_OPTED_OUT)
        if record.number_paused_until and record.number_paused_until > self.now:
            badges.append(BADGE_PAUSED)
        return format_html(
            '<span class="font-monospace">{}</span> {}',
            record.to_number,
            mark_safe(" ".join(badges)),  # noqa: S308 - each badge is escaped by format_html
        )

    def render_status(self, record):
        label = lifecycle.staff_status(record, self.now)
        return format_html('<span class="badge {}">{}</span>', status_class(label), label)

    def render_reason(self, record):
        return failed_reason(record) or "—"

    def render_actions(self, record):
        token = get_token(self.request)
        back = self.request.get_full_path()
        forms = []
        if record.to_number.startswith("+"):
            for action, label, offered in ROW_ACTIONS:
                if offered(record):
                    forms.append(self._action_form(record, action, label, token, back))
        if getattr(record, "retry_skip_reason", None) is None:
            forms.append(self._action_form(record, "retry", "Retry", token, back))
        else:
            forms.append(
                format_html(
                    '<span class="dropdown-item-text small text-body-secondary">'
                    "No retry: it would be skipped ({})</span>",
                    SkipReason(record.retry_skip_reason).label.lower(),
                )
            )
        return format_html(
            '<div class="dropdown"><button class="btn btn-outline-secondary btn-sm" type="button" '
            'data-bs-toggle="dropdown" aria-expanded="false" aria-label="More actions" '
            'id="row-actions-{pk}"><i class="bi bi-three-dots-vertical" aria-hidden="true"></i>'
            '</button><div class="dropdown-menu dropdown-menu-end" '
            'aria-labelledby="row-actions-{pk}">{forms}</div></div>',
            pk=record.pk,
            forms=mark_safe("".join(forms)),  # noqa: S308 - built with format_html
        )

    @staticmethod
    def _action_form(record, action, label, token, back):
        url = reverse("conversations:failed_action", args=[record.pk, action])
        confirm = ""
        if action == "opt-out":
            confirm = f"Opt out {record.to_number}? No messages will go to it."
        return format_html(
            '<form method="post" action="{url}" hx-post="{url}" hx-target="closest tr" '
            'hx-swap="outerHTML"{confirm}>'
            '<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
            '<input type="hidden" name="next" value="{back}">'
            '<button class="dropdown-item" type="submit">{label}</button></form>',
            url=url,
            confirm=format_html(' hx-confirm="{}"', confirm) if confirm else "",
            token=token,
            back=back,
            label=label,
        )

    def rendered_rows(self):
        """Each row of the page as its cells' HTML, built directly.

        django-tables2 resolves every cell through signature inspection (about 0.5 ms a cell);
        the columns here are fixed, so the page renders them in one pass and keeps
        django-tables2 for the header, sorting and pagination.
        """
        rows = []
        for bound in self.paginated_rows:
            record = bound.record
            cells = [
                (
                    "",
                    format_html(
                        '<input type="checkbox" name="message" value="{}" form="bulk-form" '
                        'aria-label="Select">',
                        record.pk,
                    ),
                ),
                ("", self.render_contact(record)),
                ("", self.render_phone(record)),
                ("", self.render_status(record)),
                ("", self.render_reason(record)),
                ("", record.error_code if record.error_code is not None else "—"),
                ("", date_format(timezone.localtime(record.created_at), "M j, Y g:i A")),
                ("text-end", self.render_actions(record)),
            ]
            rows.append({"pk": record.pk, "cells": cells})
        return rows

    def order_created_at(self, queryset, is_descending):
        order = ("-created_at", "-id") if is_descending else ("created_at", "id")
        return queryset.order_by(*order), True
