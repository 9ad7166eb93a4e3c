"""Read-side queries of the Conversations page: the contacts' filters, through the contact."""

from contacts.queries import FILTERS, cached_counts, filter_counts, search_q, state_filter
from conversations.models import Conversation

__all__ = ["FILTERS", "conversation_list", "conversation_counts"]


def conversation_counts(org):
    return cached_counts(
        org,
        "conversations",
        lambda: filter_counts(Conversation.objects.for_org(org), org, prefix="contact__"),
    )


def conversation_list(org, *, filter_name="active", search=""):
    conversations = (
        Conversation.objects.for_org(org)
        .select_related("contact")
        .filter(state_filter(org, filter_name, prefix="contact__"))
    )
    if search:
        conversations = conversations.filter(search_q(search, prefix="contact__"))
    return conversations.order_by("-last_message_at", "-id")
