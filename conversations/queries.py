"""Read-side queries of the Conversations page: the contacts' filters, through the contact."""

from contacts.models import Contact
from contacts.queries import FILTERS, cached_counts, filter_counts, search_q, state_filter
from conversations.models import Conversation
from deliverability.models import NumberState

__all__ = ["FILTERS", "conversation_list", "conversation_counts"]


def conversation_counts(org):
    return cached_counts(
        org,
        "conversations",
        lambda: filter_counts(Conversation.objects.for_org(org), org, prefix="contact__"),
    )


def conversation_list(org, *, filter_name="active", search=""):
    conversations = Conversation.objects.for_org(org).select_related("contact")
    if filter_name in ("invalid", "opted_out"):
        # Flagged numbers are few: their contacts first (driven by the state's partial index),
        # then their conversations by the contact index, newest first.
        states = NumberState.objects.for_org(org)
        states = states.invalid() if filter_name == "invalid" else states.opted_out()
        flagged = Contact.objects.for_org(org).filter(phone_e164__in=states.values("phone"))
        ids = list(flagged.values_list("id", flat=True))  # a list: the planner then starts here
        conversations = conversations.filter(contact_id__in=ids)
    else:
        conversations = conversations.filter(state_filter(org, filter_name, prefix="contact__"))
    if search:
        conversations = conversations.filter(search_q(search, prefix="contact__"))
    return conversations.order_by("-last_message_at", "-id")
