"""The main navigation. An entry shows only when its page exists and the role may open it."""

from django.urls import NoReverseMatch, reverse

# (url name, label, managers only)
NAV = [
    ("home", "Overview", False),
    ("conversations:list", "Conversations", False),
    ("conversations:failed", "Failed & Disabled", False),
    ("contacts:list", "Contacts", False),
    ("conversations:review", "Review", False),
    ("broadcasts:list", "Broadcasts", True),
    ("deliverability:reports", "Reports", True),
]


def nav_items(request):
    membership = getattr(request, "membership", None)
    if not membership:
        return []
    items = []
    for name, label, managers_only in NAV:
        if managers_only and not membership.is_manager:
            continue
        try:
            items.append({"name": name, "url": reverse(name), "label": label, "active": False})
        except NoReverseMatch:
            continue
    # The active entry is the longest URL the path starts with (/conversations/failed/ is not
    # also /conversations/); the overview at / is active only on / itself.
    matches = [i for i in items if request.path.startswith(i["url"]) and i["url"] != "/"]
    matches = matches or [i for i in items if request.path == i["url"]]
    if matches:
        max(matches, key=lambda i: len(i["url"]))["active"] = True
    for item in items:
        if item["name"] == "conversations:review":
            # Replies waiting for a person (deliverability.ReviewItem, decision not yet made).
            item["count"] = membership.organization.review_items.filter(decision="").count()
    return items
