"""The Broadcasts pages (managers): compose, preview, Sample Text, send, progress, cancel."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from contacts import phones
from contacts.access import manager_required
from contacts.urlparams import id_param
from conversations import broadcasts
from conversations.content import compose_check
from conversations.forms import BroadcastForm, SampleTextForm
from conversations.models import Broadcast, Message
from conversations.sending import SendRefused, message_create_outbound
from deliverability import costs


def _form(request):
    return BroadcastForm(
        request.POST or None, request.FILES or None, organization=request.organization
    )


@require_GET
@manager_required
def broadcast_list(request):
    recent = Broadcast.objects.filter(organization=request.organization).select_related("sender")[
        :20
    ]
    # After a Sample Text sent without JavaScript: its outcome under the form.
    samples = Message.objects.filter(organization=request.organization, is_test=True)
    sample_id = id_param(request.GET.get("sample"))
    sample = samples.filter(pk=sample_id).first() if sample_id else None
    return render(
        request,
        "conversations/broadcasts.html",
        {"form": _form(request), "recent": recent, "check": compose_check(""), "sample": sample},
    )


@require_POST
@manager_required
def broadcast_preview(request):
    form = _form(request)
    context = {"form": form}
    if form.is_valid():
        data = form.cleaned_data
        context["preview"] = broadcasts.preview(
            org=request.organization,
            sender=data["sender"],
            body=data["body"],
            kind=data["audience"],
            audience_filter=data["audience_filter"],
        )
    template = (
        "conversations/broadcast_preview.html" if request.htmx else "conversations/broadcasts.html"
    )
    return render(request, template, context)


@require_POST
@manager_required
def broadcast_start(request):
    form = _form(request)
    if not form.is_valid():
        return render(request, "conversations/broadcasts.html", {"form": form}, status=400)
    data = form.cleaned_data
    preview = broadcasts.preview(
        org=request.organization,
        sender=data["sender"],
        body=data["body"],
        kind=data["audience"],
        audience_filter=data["audience_filter"],
    )
    if data["confirmed_sendable"] != preview.sendable:
        # Staff see "Send to N people?" first, and again if N changed since they agreed.
        context = {"form": form, "preview": preview, "confirm": True}
        context["listed"] = "\n".join(data["audience_filter"].get("phones", []))
        return render(request, "conversations/broadcasts.html", context)
    try:
        broadcast = broadcasts.broadcast_start(
            org=request.organization,
            sender=data["sender"],
            body=data["body"],
            kind=data["audience"],
            audience_filter=data["audience_filter"],
            name=data["name"],
            by=request.user,
        )
    except broadcasts.BroadcastRefused as refusal:
        messages.error(request, str(refusal))
        return render(request, "conversations/broadcasts.html", {"form": form}, status=400)
    messages.success(
        request, f"Success: the broadcast to {broadcast.recipient_count} contacts started."
    )
    return redirect("broadcasts:detail", broadcast.pk)


@require_POST
@manager_required
def sample_text(request):
    """A test send to one number: every check is skipped but opt-out and the Invalid flag.

    It never creates or changes a contact; its outcome shows under the form, live."""
    form = SampleTextForm(request.POST, organization=request.organization)
    message = None
    if not form.is_valid():
        text, level = " ".join(e for errors in form.errors.values() for e in errors), "danger"
    else:
        data = form.cleaned_data
        try:
            message = message_create_outbound(
                org=request.organization,
                contact=None,
                phone=data["phone"],
                body=data["body"],
                sender=data["sender"],
                by=request.user,
                is_test=True,
            )
            shown = phones.national(data["phone"], request.organization.default_region)
            text, level = f"Sample Text queued to {shown}.", "success"
        except SendRefused as refusal:
            text, level = str(refusal), "danger"
    if not request.htmx:
        (messages.success if level == "success" else messages.error)(request, text)
        url = reverse("broadcasts:list")
        return redirect(f"{url}?sample={message.pk}" if message else url)
    context = {"text": text, "level": level, "sample": message}
    response = render(request, "conversations/sample_result.html", context)
    return trigger_client_event(response, "toast", {"message": text, "level": level})


@require_GET
@manager_required
def sample_status(request, message_id):
    """The live outcome of a Sample Text, polled under the form until it is final."""
    sample = get_object_or_404(
        Message, pk=message_id, organization=request.organization, is_test=True
    )
    return render(request, "conversations/sample_status.html", {"sample": sample})


@require_GET
@manager_required
def broadcast_detail(request, broadcast_id):
    broadcast = get_object_or_404(
        Broadcast.objects.select_related("sender", "created_by"),
        pk=broadcast_id,
        organization=request.organization,
    )
    progress = broadcasts.progress(broadcast)
    context = {
        "broadcast": broadcast,
        "progress": progress,
        "ledger": costs.broadcast_ledger(broadcast),
        "live": broadcasts.still_changing(broadcast, progress),
    }
    if request.htmx and request.htmx.target == "broadcast-progress":
        return render(request, "conversations/broadcast_progress.html", context)
    return render(request, "conversations/broadcast_detail.html", context)


@require_POST
@manager_required
def broadcast_cancel(request, broadcast_id):
    broadcast = get_object_or_404(Broadcast, pk=broadcast_id, organization=request.organization)
    try:
        canceled = broadcasts.broadcast_cancel(broadcast=broadcast, by=request.user)
        messages.success(request, f"Broadcast canceled: {canceled} messages will not be sent.")
    except broadcasts.BroadcastRefused as refusal:
        messages.error(request, str(refusal))
    return redirect("broadcasts:detail", broadcast.pk)
