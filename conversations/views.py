import csv

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event
from django_tables2 import RequestConfig

from contacts.access import manager_required, org_member_required, safe_next
from contacts.exports import export_rows
from contacts.queries import tabs
from contacts.urlparams import (
    MAX_OFFSET,
    LastPageLazyPaginator,
    id_param,
    page_number,
    search_param,
)
from conversations import queries, simulate
from conversations import status as lifecycle
from conversations.content import compose_check
from conversations.filters import FailedMessageFilter
from conversations.models import Conversation, Message
from conversations.queries import with_number_state, with_retry_check
from conversations.sending import SendRefused, message_create_outbound
from conversations.status import failed_reason, staff_status
from conversations.tables import FailedMessageTable
from deliverability import actions
from deliverability.models import OrgAlert, ReviewItem, SkipReason, StateChangeRefused
from deliverability.queries import states_by_phone

PAGE_SIZE = 50
THREAD_SIZE = 100


def _list_context(request):
    filter_name = request.GET.get("filter", "active")
    if filter_name not in queries.FILTERS:
        filter_name = "active"
    search = search_param(request)
    number = page_number(request)
    conversations = queries.conversation_list(
        request.organization,
        filter_name=filter_name,
        search=search,
        reach=min(number * PAGE_SIZE, MAX_OFFSET) + 1,
    )
    page = LastPageLazyPaginator(conversations, PAGE_SIZE).page(number)
    rows = list(page.object_list)
    states = states_by_phone(request.organization, [c.contact.phone_e164 for c in rows])
    return {
        "filter": filter_name,
        "q": search,
        "page": page,
        "rows": [(c, states.get(c.contact.phone_e164)) for c in rows],
        "tabs": tabs(queries.conversation_counts(request.organization)),
    }


def _thread_context(request, conversation):
    messages_qs = with_number_state(conversation.messages, request.organization)
    thread = list(messages_qs.order_by("-created_at", "-id")[:THREAD_SIZE])
    thread.reverse()
    inbound = [m.pk for m in thread if m.direction == Message.Direction.INBOUND]
    in_review = ReviewItem.objects.pending().filter(inbound_message_id__in=inbound)
    return {
        "conversation": conversation,
        "thread": thread,
        "in_review": set(in_review.values_list("inbound_message_id", flat=True)),
    } | _poll_context(thread, after=0)


def _poll_context(messages, after):
    """Where the thread's poll goes on from: the newest message shown and the ones awaiting
    a status."""
    now = timezone.now()
    return {
        "last_id": max([after] + [m.pk for m in messages]),
        "awaiting": [m.pk for m in messages if lifecycle.awaits_status(m, now)],
    }


@require_GET
@org_member_required
def conversation_list(request):
    return _conversations_page(request, _list_context(request))


@require_GET
@org_member_required
def conversation_detail(request, conversation_id):
    """The list with one conversation open beside it: its thread and its contact card."""
    conversation = _conversation(request, conversation_id)
    context = (
        _list_context(request)
        | _thread_context(request, conversation)
        | actions.card_context(request, conversation.contact, "conversations")
    )
    context["simulator"] = simulate.simulator_on()
    return _conversations_page(request, context)


def _conversation(request, conversation_id):
    """The organization's conversation with its contact, or a 404 (another org's too)."""
    return get_object_or_404(
        Conversation.objects.select_related("contact"),
        pk=conversation_id,
        organization=request.organization,
    )


def _conversations_page(request, context):
    """The whole page, or only the list panel when htmx asks for it (a filter or a search)."""
    if request.htmx and request.htmx.target == "conversation-list":
        return render(request, "conversations/list_panel.html", context)
    return render(request, "conversations/conversations.html", context)


@require_GET
@org_member_required
def thread(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    return render(request, "conversations/thread.html", _thread_context(request, conversation))


@require_GET
@org_member_required
def thread_updates(request, conversation_id):
    """What changed in a thread since the page last asked: the awaited messages' status
    fragments and the messages newer than `after` (htmx out-of-band swaps)."""
    conversation = _conversation(request, conversation_id)
    after = id_param(request.GET.get("after")) or 0
    awaiting = [pk for pk in map(id_param, request.GET.get("awaiting", "").split(",")) if pk]
    messages_qs = with_number_state(conversation.messages, request.organization)
    changed = list(messages_qs.filter(pk__in=awaiting[:THREAD_SIZE], pk__lte=after))
    newer = messages_qs.filter(pk__gt=after).order_by("created_at", "id")
    new = list(newer[:THREAD_SIZE])
    inbound = [m.pk for m in new if m.direction == Message.Direction.INBOUND]
    in_review = ReviewItem.objects.pending().filter(inbound_message_id__in=inbound)
    context = {
        "conversation": conversation,
        "changed": changed,
        "new": new,
        "after": after,
        "in_review": set(in_review.values_list("inbound_message_id", flat=True)),
    } | _poll_context(changed + new, after)
    return render(request, "conversations/thread_updates.html", context)


@require_POST
@org_member_required
def mark_read(request, conversation_id):
    """The page marks a conversation read once it has opened it, by this POST: a GET never
    writes, so a link or an image on another site cannot mark conversations read."""
    conversation = _conversation(request, conversation_id)
    Conversation.objects.filter(pk=conversation.pk, unread_count__gt=0).update(unread_count=0)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect("conversations:detail", conversation.pk)


@require_POST
@org_member_required
def send(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    try:
        message_create_outbound(
            org=request.organization,
            contact=conversation.contact,
            body=request.POST.get("body", "").replace("\x00", ""),  # PostgreSQL refuses NUL
            by=request.user,
        )
        text, level = "Message queued.", "success"
    except SendRefused as refusal:
        text, level = str(refusal), "danger"
    if not request.htmx:
        (messages.success if level == "success" else messages.error)(request, text)
        return redirect("conversations:detail", conversation.pk)
    response = render(request, "conversations/thread.html", _thread_context(request, conversation))
    return trigger_client_event(response, "toast", {"message": text, "level": level})


@require_POST
@org_member_required
def simulate_reply(request, conversation_id):
    """The demo's "Simulate a reply": the member's text comes in through the real webhook."""
    if not simulate.simulator_on():
        raise Http404("Only with the simulator.")
    conversation = _conversation(request, conversation_id)
    # A quick-reply button and the text field share the name: the one with a value counts.
    bodies = [b.replace("\x00", "").strip() for b in request.POST.getlist("body")]
    body = next((b for b in bodies if b), "")[:1600]
    if not body or not conversation.contact.phone_e164:
        text, level = "Write the member's reply first.", "danger"
    else:
        answered = simulate.member_reply(
            org=request.organization, contact=conversation.contact, body=body
        )
        ok = answered < 300
        text = f"The member replied “{body}”." if ok else f"The webhook answered {answered}."
        level = "success" if ok else "danger"
    if not request.htmx:
        (messages.success if level == "success" else messages.error)(request, text)
        return redirect("conversations:detail", conversation.pk)
    context = _thread_context(request, conversation)
    context |= actions.card_context(request, conversation.contact, "conversations")
    response = render(request, "conversations/simulate_response.html", context)
    trigger_client_event(response, "numberStateChanged", {"phone": conversation.contact.phone_e164})
    return trigger_client_event(response, "toast", {"message": text, "level": level})


@require_POST
@org_member_required
def compose_hints(request):
    body = request.POST.get("body", "")[:2000]
    return render(request, "conversations/compose_hints.html", {"check": compose_check(body)})


# Failed & Disabled Messages ----------------------------------------------------------------------


def _failed_messages(request):
    # A Sample Text has no contact to act on: its outcome shows under the Broadcasts form.
    messages_qs = (
        Message.objects.failed_or_skipped()
        .for_org(request.organization)
        .filter(conversation__isnull=False)
        .select_related("conversation__contact", "sender")
    )
    return with_number_state(messages_qs, request.organization)


@require_GET
@org_member_required
def failed_log(request):
    filterset = FailedMessageFilter(
        request.GET or None, queryset=_failed_messages(request), organization=request.organization
    )
    rows = with_retry_check(filterset.qs, request.organization)
    table = FailedMessageTable(
        rows, is_manager=request.membership.is_manager, back=request.get_full_path()
    )
    # Sorting from the request; pages of PAGE_SIZE whatever ?per_page= says (a page of a
    # million rows, or one too big for the database, is not a page).
    RequestConfig(request, paginate=False).configure(table)
    table.paginate(LastPageLazyPaginator, per_page=PAGE_SIZE, page=page_number(request))
    context = {
        "filter": filterset,
        "active_filters": filterset.active(request.GET),
        "table": table,
        "now": timezone.now(),
        "query": request.GET.urlencode(),
        "pause_choices": actions.PAUSE_CHOICES,
    }
    template = (
        "conversations/failed_table_block.html" if request.htmx else "conversations/failed.html"
    )
    return render(request, template, context)


def _render_row(request, message):
    """One row of the log again (htmx), from the table's own row partial."""
    table = FailedMessageTable(
        [message],
        is_manager=request.membership.is_manager,
        back=safe_next(request, reverse("conversations:failed")),
    )
    [row] = table.page_rows()
    context = {"row": row, "table": table}
    return render(request, "conversations/failed_table.html#failed-row", context)


def _confirm_opt_out(request, selected):
    """The page that asks before opting the selected messages' numbers out."""
    numbers = {m.to_number for m in selected}
    only = selected[0] if len(numbers) == 1 else None
    context = actions.confirm_context(
        request,
        who=str(only.conversation.contact) if only else f"{len(numbers)} numbers",
        number=only.to_number if only else "",
        count=len(numbers),
        cancel_url=safe_next(request, reverse("conversations:failed")),
    )
    return render(request, "deliverability/confirm_opt_out.html", context)


@require_POST
@org_member_required
def failed_action(request, message_id, action):
    failed = with_retry_check(_failed_messages(request), request.organization)
    message = get_object_or_404(failed, pk=message_id)
    contact = message.conversation.contact
    if action == "retry":
        text, level = _retry(request, [message])
    elif actions.needs_confirmation(action, request.POST):
        return _confirm_opt_out(request, [message])
    elif action in actions.BULK_ACTIONS:
        try:
            text = actions.perform(
                action,
                org=request.organization,
                contact=contact,
                user=request.user,
                data=request.POST,
                source_page="failed",
                phone=message.to_number,
            )
            level = "success"
        except StateChangeRefused as refusal:
            text, level = str(refusal), "danger"
    else:
        raise Http404("No such action.")
    if not request.htmx:
        (messages.success if level == "success" else messages.error)(request, text)
        return redirect(safe_next(request, reverse("conversations:failed")))
    message = failed.get(pk=message.pk)
    response = _render_row(request, message)
    if action != "retry":
        # The number's other rows (and any list showing it) listen for this and come again.
        trigger_client_event(response, "numberStateChanged", {"phone": message.to_number})
    return trigger_client_event(response, "toast", {"message": text, "level": level})


def _retry(request, failed):
    """Send each message again through the send path (its pre-send checks included)."""
    queued = 0
    retryable = [m for m in failed if getattr(m, "retry_skip_reason", None) is None]
    refused = len(failed) - len(retryable)
    if refused and not retryable:
        return (
            "Not retried: the number would be skipped "
            f"({SkipReason(failed[0].retry_skip_reason).label.lower()})."
            if len(failed) == 1
            else f"Not retried: all {refused} numbers would be skipped.",
            "warning",
        )
    for message in retryable:
        try:
            message_create_outbound(
                org=request.organization,
                contact=message.conversation.contact,
                body=message.body,
                sender=message.sender,
                by=request.user,
            )
            queued += 1
        except SendRefused:
            continue
    if not queued:
        return "Nothing could be retried (no sending number).", "danger"
    text = (
        f"Success: {queued} message{pluralize(queued)} queued again "
        "(the pre-send checks still apply)."
    )
    if refused:
        text += f" {refused} not retried: the number would be skipped."
    return text, "success"


BULK_LIMIT = 500


@require_POST
@manager_required
def failed_bulk(request):
    action = request.POST.get("action", "")
    ids = [pk for pk in map(id_param, request.POST.getlist("message")) if pk][:BULK_LIMIT]
    failed = with_retry_check(_failed_messages(request), request.organization)
    selected = list(failed.filter(pk__in=ids))
    if not selected:
        text, level = "Select at least one message first.", "warning"
    elif action == "retry":
        text, level = _retry(request, selected)
    elif actions.needs_confirmation(action, request.POST):
        return _confirm_opt_out(request, selected)
    elif action in actions.BULK_ACTIONS:
        done, skipped = actions.perform_bulk(
            action,
            org=request.organization,
            user=request.user,
            source_page="failed",
            targets=[(m.conversation.contact, m.to_number) for m in selected],
            data=request.POST,
        )
        verb = {
            "mark-invalid": "marked invalid",
            "mark-valid": "marked valid",
            "opt-out": "opted out",
            "pause": "paused",
        }[action]
        text = f"Success: {done} number{pluralize(done)} {verb}."
        for reason, count in skipped.items():
            text += f" {count} skipped: {reason}."
        level = "success" if done or not skipped else "warning"
    else:
        raise Http404("No such action.")
    (messages.success if level == "success" else messages.warning)(request, text)
    target = safe_next(request, reverse("conversations:failed"))
    if request.htmx:
        return HttpResponseClientRedirect(target)
    return redirect(target)


class _Echo:
    def write(self, value):
        return value


FAILED_EXPORT_HEADER = [
    "Date",
    "Contact",
    "Phone number",
    "Status",
    "Failed reason",
    "Error code",
    "Skip reason",
    "Sender",
    "Message",
]


@require_GET
@manager_required
def failed_export(request):
    """The filtered rows as CSV, streamed: an export of 1M rows never sits in memory."""
    filterset = FailedMessageFilter(
        request.GET or None, queryset=_failed_messages(request), organization=request.organization
    )
    if filterset.errors:
        # Without the filter that was asked for, the file would hold rows nobody asked for.
        errors = [
            f"{filterset.form[name].label}: {e}"
            for name, es in filterset.errors.items()
            for e in es
        ]
        return HttpResponseBadRequest(" ".join(errors), content_type="text/plain")
    rows = filterset.qs.order_by("-created_at", "-id")
    writer = csv.writer(_Echo())
    tz = request.organization.tzinfo
    cells = (
        [
            timezone.localtime(message.created_at, tz).strftime("%Y-%m-%d %H:%M"),
            str(message.conversation.contact),
            message.to_number,
            staff_status(message),
            failed_reason(message),
            message.error_code or "",
            message.skip_reason,
            message.sender.address if message.sender else "",
            message.body,
        ]
        for message in rows.iterator(chunk_size=2000)
    )
    lines = (
        writer.writerow(row)
        for row in export_rows(
            FAILED_EXPORT_HEADER, cells, phone_columns=("Phone number", "Sender")
        )
    )
    response = StreamingHttpResponse(lines, content_type="text/csv")
    stamp = timezone.localtime(timezone.now(), tz).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="failed-messages-{stamp}.csv"'
    return response


# Alerts ------------------------------------------------------------------------------------------


@require_POST
@manager_required
def alert_resolve(request, alert_id):
    alert = get_object_or_404(OrgAlert, pk=alert_id, organization=request.organization)
    alert.resolve(by=request.user)
    messages.success(request, "Alert marked as resolved.")
    return redirect(safe_next(request, reverse("home")))
