"""Template helpers for how staff see messages and numbers (no rules here: they call them)."""

from django import template
from django.utils.html import format_html

from contacts import phones
from conversations import status as lifecycle
from deliverability import catalogue, costs
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
    if message.status == "skipped":
        return SkipReason(message.skip_reason).label if message.skip_reason else "Skipped"
    if message.status in lifecycle.FAILED:
        if message.error_code is None:
            return message.error_message or "Failed"
        return catalogue.describe(message.error_code).reason
    return ""


@register.filter
def message_advice(message):
    if message.status in lifecycle.FAILED and message.error_code is not None:
        return catalogue.describe(message.error_code).advice
    return ""


@register.filter
def skip_reason_label(value):
    return SkipReason(value).label if value in SkipReason.values else value


@register.simple_tag
def phone(contact, region):
    """A contact's number in the org's national format, E.164 on hover (as exports have it);
    the number as entered when it does not parse."""
    if not contact.phone_e164:
        return contact.phone_display
    shown = phones.national(contact.phone_e164, region)
    return format_html('<span title="{}">{}</span>', contact.phone_e164, shown)


@register.filter
def money(amount):
    """A Decimal amount in USD as staff read it (deliverability.costs.money_text)."""
    return costs.money_text(amount)
