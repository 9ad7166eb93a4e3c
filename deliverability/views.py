from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from contacts.access import org_member_required, safe_next
from contacts.models import Contact
from deliverability import actions
from deliverability.services import StateChangeRefused

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
    return trigger_client_event(response, "toast", {"message": text, "level": level})
