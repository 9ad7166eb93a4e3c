"""Who may see and do what (SPEC §8): every view goes through one of these decorators."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme


def org_member_required(view):
    """Login plus a membership; sets request.organization. No membership is a 403."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        membership = request.membership
        if not membership:
            raise PermissionDenied("You are not a member of any organization.")
        request.organization = membership.organization
        # Staff see every date in their organization's time zone, for this request only: the
        # thread serves other requests next (the admin, another organization's staff).
        timezone.activate(request.organization.tzinfo)
        try:
            return view(request, *args, **kwargs)
        finally:
            timezone.deactivate()

    return wrapped


def manager_required(view):
    """As org_member_required, and the member must be a manager of the current organization."""

    @wraps(view)
    def check_role(request, *args, **kwargs):
        if not request.membership.is_manager:
            raise PermissionDenied("Only managers can do this.")
        return view(request, *args, **kwargs)

    return org_member_required(check_role)


def safe_next(request, fallback):
    """The `next` URL of the request when it is on this site, else `fallback`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    # Only a path of this site: anything else (another host, a bare word that redirect()
    # would try to reverse as a view name) falls back.
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        return target
    return fallback
