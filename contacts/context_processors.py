from contacts.middleware import user_memberships
from contacts.navigation import nav_items


def organization(request):
    """The current membership, the user's organizations, the navigation and open alerts.

    Computed once per request: table cells rendered from templates run context processors
    again, and this must not cost a query per cell.
    """
    if not hasattr(request, "_organization_context"):
        request._organization_context = _organization_context(request)
    return request._organization_context


def _organization_context(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = request.membership
    if not membership:
        return {}
    alerts = []
    if membership.is_manager:
        # Deliverability alerts (sender errors, circuit breaker) stay in the header until resolved.
        alerts = list(membership.organization.alerts.filter(resolved_at__isnull=True)[:5])
    return {
        "org_alerts": alerts,
        "current_membership": membership,
        "current_organization": membership.organization,
        "is_manager": membership.is_manager,
        "all_memberships": user_memberships(request),
        "nav_items": nav_items(request),
    }
