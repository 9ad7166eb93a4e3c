from django.contrib import messages
from django.db import connection
from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from config.celery import enqueue_on_commit
from contacts import importer, phones, queries
from contacts.access import manager_required, org_member_required
from contacts.forms import ImportForm, PhoneForm
from contacts.middleware import SESSION_KEY, user_memberships
from contacts.models import Contact, ContactImport, ContactImportRow
from contacts.urlparams import page_of, search_param
from conversations.queries import with_number_state
from deliverability import actions, services
from deliverability.models import AuditEvent
from deliverability.queries import contacts_in_tab, filter_counts, list_health, states_by_phone


@org_member_required
def home(request):
    """The overview: how healthy the organization's list is today."""
    org = request.organization
    health = queries.cached_counts(org, "health", lambda: list_health(org))
    return render(request, "contacts/home.html", {"health": health})


@require_POST
@org_member_required
def switch_organization(request):
    slug = request.POST.get("organization", "")
    for membership in user_memberships(request):
        if membership.organization.slug == slug:
            request.session[SESSION_KEY] = membership.organization_id
            messages.success(request, f"You are now working in {membership.organization.name}.")
            return redirect("home")
    raise Http404("No such organization.")


@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links: send them to the icon."""
    return redirect(static("reachable/favicon.svg"), permanent=True)


@never_cache
@require_GET
def healthz(request):
    """200 when the database answers; 503 otherwise. No login: load balancers call it."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return HttpResponse("ok", content_type="text/plain")


@require_GET
@org_member_required
def contact_list(request):
    filter_name = request.GET.get("filter", "active")
    if filter_name not in queries.FILTERS:
        filter_name = "active"
    search = search_param(request)
    contacts = contacts_in_tab(request.organization, filter_name=filter_name, search=search)
    page = page_of(request, contacts, 50, lazy=True)
    rows = list(page.object_list)
    states = states_by_phone(request.organization, [c.phone_e164 for c in rows])
    context = {
        "filter": filter_name,
        "q": search,
        "page": page,
        "rows": [(contact, states.get(contact.phone_e164)) for contact in rows],
        "now": timezone.now(),
        "tabs": queries.tabs(
            queries.cached_counts(
                request.organization,
                "contacts",
                lambda: filter_counts(
                    Contact.objects.for_org(request.organization), request.organization
                ),
            ),
        ),
    }
    return render(request, "contacts/contact_list.html", context)


def _profile_context(request, contact, form=None):
    history = (
        with_number_state(contact.conversation.messages, request.organization).order_by(
            "-created_at", "-id"
        )[:50]
        if hasattr(contact, "conversation")
        else []
    )
    phones = {p for p in [contact.phone_e164, contact.phone_raw] if p}
    audit = (
        AuditEvent.objects.filter(organization=request.organization)
        .filter(Q(contact=contact) | Q(phone__in=phones))
        .select_related("actor")[:50]
    )
    return actions.card_context(request, contact, "contact") | {
        "contact": contact,
        "history": history,
        "audit": audit,
        "phone_form": form or PhoneForm(initial={"phone": contact.phone_raw}),
    }


@require_GET
@org_member_required
def contact_detail(request, contact_id):
    contact = get_object_or_404(Contact, pk=contact_id, organization=request.organization)
    return render(request, "contacts/contact_detail.html", _profile_context(request, contact))


@require_POST
@org_member_required
def contact_change_phone(request, contact_id):
    """Editing the number: the contact takes the new number and whatever state it has."""
    contact = get_object_or_404(Contact, pk=contact_id, organization=request.organization)
    form = PhoneForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "contacts/contact_detail.html",
            _profile_context(request, contact, form),
            status=400,
        )
    parsed = services.contact_change_phone(
        contact=contact,
        raw=form.cleaned_data["phone"],
        by=request.user,
        note=form.cleaned_data["note"],
        source_page="contact",
    )
    if parsed.is_valid:
        shown = phones.national(parsed.e164, request.organization.default_region)
        messages.success(request, f"Success: the phone number is now {shown}.")
    elif parsed.raw:
        messages.warning(request, f"Saved, but this number can't be texted: {parsed.error}.")
    else:
        messages.warning(request, "Saved without a phone number.")
    return redirect(contact)


@manager_required
def contact_import(request):
    """Upload a CSV of members; small files are imported at once, big ones in the background."""
    form = ImportForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        uploaded = request.FILES.get("file")
        try:
            if not form.is_valid():
                raise importer.ImportRefused("Choose what to do with a row whose phone is taken.")
            upload = importer.read_upload(uploaded)
        except importer.ImportRefused as refusal:
            messages.error(request, str(refusal))
            return redirect("contacts:import")
        job = importer.create_import(
            org=request.organization,
            user=request.user,
            filename=uploaded.name,
            upload=upload,
            on_duplicate_phone=form.cleaned_data["on_duplicate_phone"],
        )
        if upload.rows <= importer.INLINE_ROWS:
            importer.run_import(job.pk)
        else:
            enqueue_on_commit("contacts.tasks.import_contacts", job.pk)
        return redirect("contacts:import_result", job.pk)
    imports = ContactImport.objects.filter(organization=request.organization)[:10]
    return render(request, "contacts/import.html", {"imports": imports, "form": form})


@require_GET
@manager_required
def contact_import_result(request, import_id):
    job = get_object_or_404(ContactImport, pk=import_id, organization=request.organization)
    outcome = request.GET.get("outcome", "")
    rows = job.rows.select_related("contact")
    if outcome in ContactImportRow.Outcome.values:
        rows = rows.filter(outcome=outcome)
    page = page_of(request, rows, 200)
    counts = job.counts or {}
    context = {
        "job": job,
        "page": page,
        "outcome": outcome,
        "outcome_counts": [
            (value, label, counts.get(value, 0))
            for value, label in ContactImportRow.Outcome.choices
        ],
    }
    if request.htmx and request.htmx.target == "import-lookups":
        return render(request, "contacts/import_lookups.html", context)
    if request.htmx and request.htmx.target == "import-progress":
        if job.state == ContactImport.State.DONE:
            return HttpResponseClientRefresh()  # The finished page shows every row's result.
        return render(request, "contacts/import_progress.html", context)
    return render(request, "contacts/import_result.html", context)
