"""The Review queue (SPEC §3): replies that may be an opt-out or a resubscribe, for staff.

Each item shows why it was flagged, one-click decisions and, for a few minutes after either,
an Undo. With htmx the item is swapped in place; without JavaScript the same URLs redirect back
to the queue with a message.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from contacts.access import org_member_required
from conversations.models import Conversation
from deliverability import consent
from deliverability.models import ReviewItem

DONE_TEXT = {
    ReviewItem.Decision.OPT_OUT: "Opted out.",
    ReviewItem.Decision.NOT_OPT_OUT: "Marked as not an opt-out; broadcasts may reach the number.",
    ReviewItem.Decision.RESUBSCRIBE: "Resubscribed: the member will get texts again.",
    ReviewItem.Decision.KEEP_OPTED_OUT: "Kept opted out.",
}


def _with_conversations(org, items):
    """Each item with the id of its contact's conversation (one query)."""
    contact_ids = {item.contact_id for item in items if item.contact_id}
    threads = dict(
        Conversation.objects.filter(organization=org, contact_id__in=contact_ids).values_list(
            "contact_id", "id"
        )
    )
    for item in items:
        item.conversation_id = threads.get(item.contact_id)
        item.may_undo = consent.may_undo(item)
    return items


@require_GET
@org_member_required
def review_queue(request):
    org, now = request.organization, timezone.now()
    items = ReviewItem.objects.for_org(org).select_related("contact", "decided_by")
    pending = list(items.pending().order_by("received_at", "id")[:200])
    recent = list(
        items.exclude(decision=ReviewItem.Decision.PENDING)
        .filter(decided_at__gte=now - consent.UNDO_WINDOW)
        .order_by("-decided_at")[:50]
    )
    context = {
        "pending": _with_conversations(org, pending),
        "recent": _with_conversations(org, recent),
        "pending_count": items.pending().count(),
    }
    return render(request, "conversations/review.html", context)


def _respond(request, item, text, level):
    if not request.htmx:
        (messages.success if level == "success" else messages.error)(request, text)
        return redirect("conversations:review")
    item.refresh_from_db()
    [item] = _with_conversations(request.organization, [item])
    response = render(request, "conversations/review_item.html", {"item": item})
    trigger_client_event(response, "numberStateChanged", {"phone": item.phone})
    return trigger_client_event(response, "toast", {"message": text, "level": level})


@require_POST
@org_member_required
def review_decide(request, item_id):
    item = get_object_or_404(ReviewItem, pk=item_id, organization=request.organization)
    decision = request.POST.get("decision", "")
    try:
        consent.review_decide(
            item=item, decision=decision, by=request.user, note=request.POST.get("note", "")
        )
        text, level = DONE_TEXT[decision], "success"
    except consent.ReviewRefused as refusal:
        text, level = str(refusal), "danger"
    return _respond(request, item, text, level)


@require_POST
@org_member_required
def review_undo(request, item_id):
    item = get_object_or_404(ReviewItem, pk=item_id, organization=request.organization)
    try:
        consent.review_undo(item=item, by=request.user)
        text, level = "Undone: the reply waits for a decision again.", "success"
    except consent.ReviewRefused as refusal:
        text, level = str(refusal), "danger"
    return _respond(request, item, text, level)
