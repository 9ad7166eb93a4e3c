import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from contacts.access import manager_required, org_member_required, safe_next
from contacts.exports import export_rows
from contacts.models import Contact, Membership
from contacts.urlparams import id_param, page_of
from deliverability import actions, charts, costs, reports
from deliverability.forms import ReportPeriodForm
from deliverability.models import StateChangeRefused

SOURCE_PAGES = {"conversations", "contact", "failed", "contacts"}


@require_POST
@org_member_required
def contact_action(request, contact_id, action):
    """A three-dot action on a contact's number: the card comes back re-rendered (htmx), or
    the page it came from with a message (no JavaScript)."""
    if action not in actions.ACTIONS:
        raise Http404("No such action.")
    if action in actions.MANAGER_ACTIONS and not request.membership.is_manager:
        raise PermissionDenied("Only managers can do this.")
    contact = get_object_or_404(Contact, pk=contact_id, organization=request.organization)
    source_page = request.POST.get("page") if request.POST.get("page") in SOURCE_PAGES else ""
    if actions.needs_confirmation(action, request.POST):
        context = actions.confirm_context(
            request,
            who=str(contact),
            number=contact.phone_e164,
            cancel_url=safe_next(request, contact.get_absolute_url()),
        )
        return render(request, "deliverability/confirm_opt_out.html", context)
    try:
        text, level = (
            actions.perform(
                action,
                org=request.organization,
                contact=contact,
                user=request.user,
                data=request.POST,
                source_page=source_page,
            ),
            "success",
        )
    except StateChangeRefused as refusal:
        text, level = str(refusal), "danger"
    if not request.htmx:
        (messages.success if level == "success" else messages.error)(request, text)
        return redirect(safe_next(request, contact.get_absolute_url()))
    response = render(
        request,
        "deliverability/contact_action_response.html",
        actions.card_context(request, contact, source_page),
    )
    # Every list, tab and log row showing this number listens for this and comes again.
    trigger_client_event(response, "numberStateChanged", {"phone": contact.phone_e164})
    return trigger_client_event(response, "toast", {"message": text, "level": level})


# Reports (managers) -------------------------------------------------------------------------------

REPORTS = [
    ("opt_outs", "Opt-out reasons"),
    ("health", "List health"),
    ("delivery", "Delivery"),
    ("staff", "Staff activity"),
    ("costs", "Costs"),
]


def _csv_response(filename, header, rows, phone_columns=()):
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv.writer(response).writerows(export_rows(header, rows, phone_columns=phone_columns))
    return response


def _report_context(request, name, period, form):
    query = request.GET.copy()
    query.pop("format", None)
    return {
        "report": name,
        "reports": REPORTS,
        "period": period,
        "period_form": form,
        # After an error the form shows what was asked for, so that it can be corrected.
        "shown_period": form.data.get("period", "") if form.errors else period.key,
        "query": query.urlencode(),
        "periods": [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("custom", "Custom")],
    }


def _opt_outs(request, org, period, stamp, as_csv):
    data = reports.opt_out_reasons(org, period)
    if as_csv:
        rows = [(r["label"], r["count"], r["share"]) for r in data["rows"]]
        header = ["Reason", "Opt-outs", "Share %"]
        return _csv_response(f"opt-out-reasons-{stamp}.csv", header, rows)
    bars = [(r["label"], r["count"], f"{r['share']}% ({r['count']})") for r in data["rows"]]
    return {"data": data, "chart": charts.horizontal_bars(bars)}


def _health(request, org, period, stamp, as_csv):
    data = reports.health(org)
    if as_csv:
        rows = [(r["label"], r["count"], r["share"]) for r in data]
        return _csv_response("list-health.csv", ["Measure", "Contacts", "Share %"], rows)
    bars = [(r["label"], r["count"], f"{r['count']} ({r['share']}%)") for r in data[1:]]
    return {"data": data, "chart": charts.horizontal_bars(bars, label_width=230)}


def _delivery(request, org, period, stamp, as_csv):
    data = reports.delivery(org, period)
    if as_csv:
        rows = [
            (
                d["day"],
                d["attempted"],
                d["delivered"],
                d["failed"],
                "" if d["rate"] is None else d["rate"],
            )
            for d in data["days"]
        ]
        rows += [(), ("Failure reason", "Code", "Category", "Count")]
        rows += [(r["reason"], r["code"] or "", r["category"], r["count"]) for r in data["reasons"]]
        header = ["Day", "Attempted", "Delivered", "Failed", "Delivery rate %"]
        return _csv_response(f"delivery-{stamp}.csv", header, rows)
    points = [
        (
            f"{d['day']:%b} {d['day'].day}",
            d["rate"] or 0,
            "–" if d["rate"] is None else f"{d['rate']}%",
        )
        for d in data["days"]
    ]
    reasons = [(r["reason"], r["count"], str(r["count"])) for r in data["reasons"][:8]]
    return {
        "data": data,
        "rate_chart": charts.columns(points, max_value=100, suffix="%"),
        "reason_chart": charts.horizontal_bars(reasons, label_width=260),
    }


def _staff(request, org, period, stamp, as_csv):
    actor = request.GET.get("actor", "")
    action = request.GET.get("action", "")
    actor_id = id_param(actor)
    events = reports.staff_activity(org, period, actor_id=actor_id, action=action)
    if as_csv:
        rows = (
            (
                timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M"),
                e.actor_label,
                e.get_action_display(),
                e.phone,
                str(e.contact or ""),
                e.source_page,
                e.note,
            )
            for e in events.iterator(chunk_size=2000)
        )
        header = ["When", "Staff member", "Action", "Number", "Contact", "Page", "Note"]
        return _csv_response(f"staff-activity-{stamp}.csv", header, rows, phone_columns=("Number",))
    return {
        "page": page_of(request, events, 100),
        "members": Membership.objects.filter(organization=org).select_related("user"),
        "actions": [(a.value, a.label) for a in reports.STAFF_ACTIONS],
        "actor": actor,
        "action": action,
    }


def _costs(request, org, period, stamp, as_csv):
    months = reports.costs_by_month(org, period)
    total = costs.totals(months)
    if as_csv:
        rows = [
            (f"{month:%Y-%m}", m.delivered, m.wasted, m.saved, m.lookups)
            for month, m in months.items()
        ]
        rows.append(("Total", total.delivered, total.wasted, total.saved, total.lookups))
        header = [
            "Month",
            "Spent on delivered (USD)",
            "Spent on failed, wasted (USD)",
            "Saved by skipping (USD)",
            "Spent on lookups (USD)",
        ]
        return _csv_response(f"costs-{stamp}.csv", header, rows)
    groups = [
        (f"{month:%b %Y}", [m.delivered, m.wasted, m.saved, m.lookups])
        for month, m in months.items()
    ]
    series = ["Spent on delivered", "Failed (wasted)", "Saved by skipping", "Lookups"]
    return {
        "months": months,
        "total": total,
        "chart": charts.grouped_columns(groups, series, money=costs.money_short),
        "legend": charts.legend(series),
    }


REPORT_VIEWS = {
    "opt_outs": _opt_outs,
    "health": _health,
    "delivery": _delivery,
    "staff": _staff,
    "costs": _costs,
}


@require_GET
@manager_required
def report(request, name="opt_outs"):
    """One report for a period (7/30/90 days or custom); ?format=csv exports its numbers."""
    if name not in REPORT_VIEWS:
        raise Http404("No such report.")
    org = request.organization
    form = ReportPeriodForm(request.GET, org=org)
    period = reports.report_period(org, *form.choice)
    stamp = f"{period.first_day}_{period.last_day}"
    as_csv = request.GET.get("format") == "csv"
    if as_csv and form.errors:
        # An export of another period than the one asked for would mislead: say why instead.
        return HttpResponseBadRequest(" ".join(form.error_texts), content_type="text/plain")
    result = REPORT_VIEWS[name](request, org, period, stamp, as_csv)
    if isinstance(result, HttpResponse):
        return result
    context = _report_context(request, name, period, form) | result
    status = 400 if form.errors else 200
    return render(request, f"deliverability/report_{name}.html", context, status=status)
