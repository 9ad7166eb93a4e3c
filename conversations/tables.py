from dataclasses import dataclass
from functools import cached_property

import django_tables2 as tables
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from conversations import status as lifecycle
from conversations.models import Message
from deliverability import actions
from deliverability.models import NumberState, SkipReason


@dataclass
class FailedRow:
    """What the row partial (conversations/failed_table.html#failed-row) shows of one message."""

    bound: object  # django-tables2's BoundRow: the row's attributes (Meta.row_attrs)
    message: Message
    status: str
    reason: str
    state: NumberState  # the number's state now, from the query's annotations
    now: object
    menu: tuple  # what the row's three-dot menu offers (actions.number_menu)

    @cached_property
    def actions(self):
        """(action, label, URL) of each menu entry but Retry."""
        return [(action, actions.LABELS[action], self._url(action)) for action in self.menu]

    @cached_property
    def retry_url(self):
        """Retry's URL, or "" when a retry would be skipped (the menu says why instead)."""
        return self._url("retry") if self.can_retry else ""

    @cached_property
    def _action_base(self):
        # One reverse() a row: the actions differ only by their last segment.
        return reverse("conversations:failed_action", args=[self.message.pk, "retry"])[
            : -len("retry/")
        ]

    def _url(self, action):
        return f"{self._action_base}{action}/"

    @property
    def has_number(self):
        """The message went to a phone number (not to text that does not parse as one)."""
        return self.message.to_number.startswith("+")

    @property
    def shown_number(self):
        """What the Phone number cell shows when there is no number: the text as entered."""
        return self.message.to_number or self.message.conversation.contact.phone_raw

    @property
    def is_paused(self):
        return self.state.is_paused(self.now)

    @property
    def can_retry(self):
        return getattr(self.message, "retry_skip_reason", None) is None

    @property
    def no_retry_reason(self):
        return SkipReason(self.message.retry_skip_reason).label.lower()


def number_state_of(message):
    """The number's state as the log's query annotated it (conversations.queries
    .with_number_state), unsaved: the menu and the badges read it like a NumberState."""
    return NumberState(
        invalid_source=message.number_invalid_source or "",
        invalid_reason=message.number_invalid_reason or "",
        opt_out_reason=message.number_opt_out_reason or "",
        paused_until=message.number_paused_until,
    )


class FailedMessageTable(tables.Table):
    """The Failed & Disabled log. django-tables2 gives the header, sorting and pagination; the
    rows come from one template partial (`failed_table.html#failed-row`), not a template per
    cell: django-tables2 resolves every cell through signature inspection (about 0.5 ms a cell),
    which at 50 rows is the difference between 20 ms and 300 ms a page."""

    select = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "th__input": {"data-select-all": "message", "aria-label": "Select all on this page"}
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
    created_at = tables.DateTimeColumn(verbose_name="Date")
    actions = tables.Column(
        empty_values=(),
        orderable=False,
        verbose_name="Actions",
        attrs={"th": {"class": "text-end"}},
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

    def __init__(self, *args, is_manager=False, back="", **kwargs):
        super().__init__(*args, **kwargs)
        self.now = timezone.now()
        self.is_manager = is_manager
        # Where a row action goes back to without JavaScript (render_table passes the row
        # partial nothing of the view's context but the table and the request).
        self.back = back

    @cached_property
    def pause_options(self):
        """The pause lengths' <option>s, rendered once for every row's menu."""
        return render_to_string(
            "conversations/failed_table.html#pause-options",
            {"pause_choices": actions.PAUSE_CHOICES},
        )

    def row_of(self, bound):
        message = bound.record
        state = number_state_of(message)
        menu = actions.number_menu(
            state,
            has_number=message.to_number.startswith("+"),
            now=self.now,
            is_manager=self.is_manager,
        )
        return FailedRow(
            bound=bound,
            message=message,
            status=lifecycle.staff_status(message, self.now),
            reason=lifecycle.failed_reason(message),
            state=state,
            now=self.now,
            menu=tuple(action for action in menu if action in actions.BULK_ACTIONS),
        )

    def page_rows(self):
        return [self.row_of(bound) for bound in self.paginated_rows]

    def order_created_at(self, queryset, is_descending):
        order = ("-created_at", "-id") if is_descending else ("created_at", "id")
        return queryset.order_by(*order), True
