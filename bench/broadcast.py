"""`broadcast`: the preview and the send hand-off of a broadcast to 100k recipients.

The preview runs the set-based checks and the finish estimate; the hand-off creates every
message in bulk (skipped ones as skipped, the rest held for the dispatcher). The hand-off runs
in a transaction that is rolled back, so the bench database does not grow.
"""

import time

from bench.common import BIG_ORG, BIG_SIZE, Figure, ensure_database, ensure_seeded

RECIPIENTS = 100_000


class _Rollback(Exception):
    pass


def run():
    ensure_database()
    from django.db import transaction

    from contacts.models import Contact
    from conversations import broadcasts
    from conversations.models import Broadcast, Sender

    org = ensure_seeded(BIG_ORG, *BIG_SIZE)
    sender = Sender.objects.filter(organization=org).order_by("-throughput").first()
    body = "The pool is closed on Saturday for maintenance."
    # 100k recipients: the org's first 100k contacts stand in for a saved filter.
    ids = Contact.objects.filter(organization=org).order_by("id").values_list("id", flat=True)
    last_id = ids[RECIPIENTS - 1]
    real_audience = broadcasts.audience
    broadcasts.audience = lambda *args, **kwargs: real_audience(*args, **kwargs).filter(
        id__lte=last_id
    )
    started = time.perf_counter()
    preview = broadcasts.preview(org=org, sender=sender, body=body, kind=Broadcast.Audience.ALL)
    preview_s = time.perf_counter() - started
    started = time.perf_counter()
    try:
        with transaction.atomic():
            broadcast = broadcasts.broadcast_start(
                org=org, sender=sender, body=body, kind=Broadcast.Audience.ALL, by=None
            )
            created = broadcast.messages.count()
            raise _Rollback
    except _Rollback:
        pass
    handoff_s = time.perf_counter() - started
    broadcasts.audience = real_audience
    return [
        Figure("broadcast", "recipients", preview.total, ""),
        Figure("broadcast", "sendable", preview.sendable, ""),
        Figure(
            "broadcast", "preview (checks + estimate)", preview_s, "s", "<= 5 s", preview_s <= 5
        ),
        Figure("broadcast", "messages created by the hand-off", created, ""),
        Figure(
            "broadcast", "send hand-off (bulk create)", handoff_s, "s", "<= 60 s", handoff_s <= 60
        ),
        Figure(
            "broadcast",
            "estimated duration at the sender's rate",
            preview.duration.total_seconds() / 3600,
            "h",
        ),
    ]
