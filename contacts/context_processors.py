from contacts.middleware import user_memberships
from contacts.navigation import nav_items


def organization(request):
    """The current membership, the user's organizations and the navigation, for the layout."""
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
