"""The Twilio history import page (managers): start or resume an import, watch it, read it."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from contacts.access import manager_required
from conversations import history
from conversations.models import HistoryImport


def _context(record, org=None):
    imports = (
        HistoryImport.objects.filter(organization=org) if org else HistoryImport.objects.none()
    )
    return {
        "record": record,
        "others": imports.exclude(pk=record.pk if record else None)[:10],
        "rows": history.report_rows(record) if record else [],
        "live": record is not None and record.state == HistoryImport.State.RUNNING,
        "max_days": history.MAX_DAYS,
        "default_days": history.DEFAULT_DAYS,
    }


@require_GET
@manager_required
def history_page(request):
    record = HistoryImport.objects.filter(organization=request.organization).first()
    return render(request, "conversations/history.html", _context(record, request.organization))


@require_GET
@manager_required
def history_progress(request, import_id):
    """The progress and report of one import; polled while it runs."""
    record = get_object_or_404(HistoryImport, pk=import_id, organization=request.organization)
    if request.htmx:
        return render(request, "conversations/history_progress.html", _context(record))
    return render(request, "conversations/history.html", _context(record, request.organization))


@require_POST
@manager_required
def history_start(request):
    raw = request.POST.get("days", "").strip()
    try:
        days = int(raw) if raw else history.DEFAULT_DAYS
    except ValueError:
        days = None
    try:
        record = history.history_import_start(org=request.organization, days=days, by=request.user)
    except history.HistoryRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("history:page")
    messages.success(
        request,
        f"Importing the Twilio history from {record.first_day:%b %-d, %Y}: progress below.",
    )
    return redirect("history:import", record.pk)
