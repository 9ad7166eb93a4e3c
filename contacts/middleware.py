from django.utils.functional import SimpleLazyObject

SESSION_KEY = "organization_id"


def user_memberships(request):
    """The user's memberships with their organizations, read once per request."""
    if not hasattr(request, "_memberships"):
        user = request.user
        request._memberships = (
            list(user.memberships.select_related("organization").order_by("organization__name"))
            if user.is_authenticated
            else []
        )
    return request._memberships


def _current_membership(request):
    """The membership of the organization the user chose (or their first), or None."""
    memberships = user_memberships(request)
    chosen = request.session.get(SESSION_KEY)
    for membership in memberships:
        if membership.organization_id == chosen:
            return membership
    return memberships[0] if memberships else None


class CurrentOrganizationMiddleware:
    """Puts the current membership on every request, lazily (one query when first used)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = SimpleLazyObject(lambda: _current_membership(request))
        return self.get_response(request)
