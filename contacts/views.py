from django.contrib import messages
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from contacts.access import org_member_required
from contacts.middleware import SESSION_KEY, user_memberships
from deliverability.queries import list_health


@org_member_required
def home(request):
    """The overview: how healthy the organization's list is today."""
    return render(request, "contacts/home.html", {"health": list_health(request.organization)})


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
