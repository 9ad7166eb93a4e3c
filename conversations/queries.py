"""Read-side queries of the Conversations page: the contacts' filters, through the contact."""

from django.db import connection
from django.db.models import CharField, DateTimeField, OuterRef, Q, Subquery

from contacts.models import Contact
from contacts.queries import FILTERS, cached_counts, search_q
from conversations.models import Conversation
from deliverability import eligibility
from deliverability.models import NumberState
from deliverability.queries import filter_counts, flagged_contact_ids, state_filter

__all__ = [
    "FILTERS",
    "conversation_list",
    "conversation_counts",
    "with_number_state",
    "with_retry_check",
]


def conversation_counts(org):
    return cached_counts(
        org,
        "conversations",
        lambda: filter_counts(Conversation.objects.for_org(org), org, prefix="contact__"),
    )


def conversation_list(org, *, filter_name="active", search="", reach=51):
    """The org's conversations under a filter, newest first; `reach` is how far from the top
    the caller reads (the end of its page)."""
    conversations = Conversation.objects.for_org(org).select_related("contact")
    if filter_name in ("invalid", "opted_out"):
        # Flagged numbers are few: the conversations of their contacts' ids (kept like the
        # counts, forgotten at every change of a state or of a contact's number). Two ways to
        # the newest of them: walk the newest-first index skipping the others (about
        # reach × total / flagged rows), or fetch every flagged one and sort (flagged rows).
        ids = flagged_contact_ids(org, filter_name)
        total = conversation_counts(org)["all"]
        # The contacts come in a second query: with a join here the planner walks the whole
        # newest-first index in parallel workers, several times slower.
        conversations = _with_contact_in(
            Conversation.objects.for_org(org).prefetch_related("contact"),
            ids,
            walk=len(ids) * len(ids) > reach * total,
        )
    else:
        conversations = conversations.filter(state_filter(org, filter_name, prefix="contact__"))
    if search:
        conversations = conversations.filter(
            search_q(search, prefix="contact__", region=org.default_region)
        )
    return conversations.order_by("-last_message_at", "-id")


def _with_contact_in(conversations, ids, walk):
    """contact_id among `ids`: one array parameter on PostgreSQL, written as its text literal
    here (thousands of IN parameters, or psycopg quoting each element of a list, cost more
    than the query itself). With `walk`, "+ 0" keeps the planner off the contact index, so
    that it walks the newest-first index and stops at the page."""
    if connection.vendor == "postgresql":
        column = f'"{Conversation._meta.db_table}"."contact_id"'
        if walk:
            column = f"({column} + 0)"
        literal = "{" + ",".join(map(str, ids)) + "}"
        return conversations.extra(where=[f"{column} = ANY(%s::bigint[])"], params=[literal])
    return conversations.filter(contact_id__in=ids)


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
