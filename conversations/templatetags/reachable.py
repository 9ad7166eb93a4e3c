"""Template helpers for how staff see messages and numbers (no rules here: they call them)."""

from django import template
from django.utils.html import format_html

from contacts import phones
from conversations import status as lifecycle
from conversations.models import Message
from deliverability import actions, catalogue, costs
from deliverability.models import SkipReason

register = template.Library()

STATUS_CLASS = {
    "Queuing": "text-bg-secondary",
    "Sending": "text-bg-info",
    "Sent": "text-bg-primary",
    "Delivered": "text-bg-success",
    "Received": "text-bg-light border",
    "Failed": "text-bg-danger",
    "Undelivered": "text-bg-danger",
    "Skipped": "text-bg-warning",
    "Status Unavailable": "text-bg-dark",
    "Canceled": "text-bg-secondary",
}


@register.filter
def staff_status(message):
    return lifecycle.staff_status(message)


@register.simple_tag
def sample_outcome(message):
    """(text, final) of a Sample Text: see conversations.status.sample_outcome."""
    return lifecycle.sample_outcome(message)


@register.filter
def status_class(label):
    return STATUS_CLASS.get(label, "text-bg-secondary")


@register.filter
def message_reason(message):
    """Why a message did not go out, in staff's words ("" when it did)."""
    return lifecycle.not_sent_reason(message)


@register.filter
def message_advice(message):
    if message.status in Message.Status.FAILED_OR_UNDELIVERED and message.error_code is not None:
        return catalogue.describe(message.error_code).advice
    return ""


@register.filter
def skip_reason_label(value):
    return SkipReason(value).label if value in SkipReason.values else value


def _national(context, value):
    """(E.164 or None, how staff read it) of an E.164 string or a contact."""
    if hasattr(value, "phone_e164"):
        value = value.phone_e164 or value.phone_raw
    if not value or not value.startswith("+"):
        return None, value or ""
    org = context.get("current_organization")
    return value, phones.national(value, org.default_region if org else "US")


@register.simple_tag(takes_context=True)
def phone(context, value):
    """A phone number as staff read it: the organization's national format ("(212) 555-0118",
    the international one for another country's number) with E.164 on hover, as exports have
    it. `value` is an E.164 string or a contact; text that is not a number (a contact's number
    as entered that does not parse) is shown as it is."""
    e164, shown = _national(context, value)
    if e164 is None or shown == e164:
        return shown
    return format_html('<span title="{}">{}</span>', e164, shown)


@register.simple_tag(takes_context=True)
def phone_text(context, value):
    """The same as plain text, for an attribute or a sentence in one."""
    return _national(context, value)[1]


@register.filter
def action_label(action):
    """What a number's action is called in its three-dot menu."""
    return actions.LABELS[action]


@register.filter
def note_prompt(action):
    """What the action's note field asks ("" when the action takes no note)."""
    return actions.NOTE_PROMPTS.get(action, "")


@register.filter
def note_example(action):
    return actions.NOTE_EXAMPLES.get(action, "")


@register.filter
def money(amount):
    """A Decimal amount in USD as staff read it (deliverability.costs.money_text)."""
    return costs.money_text(amount)
