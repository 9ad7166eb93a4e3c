"""Broadcasts (SPEC §5, §7): one message to many contacts, paced, in quiet hours, cancellable.

Preview runs the set-based pre-send checks over the audience. Starting a broadcast creates every
message in bulk: the ones the checks skip are stored as skipped at once, the others are held.
A dispatcher releases held messages to the paced send path a little ahead of the sender's rate,
only inside the org's sending window, and not while the circuit breaker has the sender paused.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from config.celery import BULK, enqueue, enqueue_on_commit
from contacts.models import Contact
from contacts.queries import search_q
from conversations import breaker, bulksend
from conversations.models import Broadcast, Conversation, Message
from conversations.segments import segment
from deliverability import costs, eligibility
from deliverability.models import SkipReason
from deliverability.queries import state_filter

RELEASE_AHEAD_SECONDS = 20  # keep this many seconds of sends released at once
CREATE_BATCH = 2000
FASTER_SENDER_HINT = (
    "Consider a faster sender: a toll-free number sends 3 messages a second, a short code 100."
)

Dispatch = Message.Dispatch


class BroadcastRefused(Exception):
    """A broadcast that cannot start; the text is for staff."""


# Audience and preview ---------------------------------------------------------------------------


def audience(org, kind, audience_filter=None):
    """The contacts a broadcast goes to. `active` is every contact not opted out (SPEC §9)."""
    contacts = Contact.objects.for_org(org)
    audience_filter = audience_filter or {}
    if kind == Broadcast.Audience.ACTIVE:
        return contacts.filter(state_filter(org, "active"))
    if kind == Broadcast.Audience.ALL:
        return contacts
    if kind == Broadcast.Audience.FILTER:
        filter_name = audience_filter.get("filter", "active")
        contacts = contacts.filter(state_filter(org, filter_name))
        if audience_filter.get("q"):
            contacts = contacts.filter(search_q(audience_filter["q"], region=org.default_region))
        return contacts
    if kind == Broadcast.Audience.UPLOAD:
        return contacts.filter(phone_e164__in=audience_filter.get("phones", []))
    raise BroadcastRefused(f"Unknown audience {kind!r}.")


@dataclass(frozen=True)
class Preview:
    total: int
    sendable: int
    skipped: dict  # skip reason -> count
    finish_at: datetime | None
    duration: timedelta
    segments: int
    warning: str
    saving: Decimal = Decimal(0)  # not spent on recipients the message could not reach

    @property
    def skipped_total(self):
        return sum(self.skipped.values())


def in_window(org, moment):
    local = timezone.localtime(moment, org.tzinfo).time()
    return org.quiet_hours_start <= local < org.quiet_hours_end


def next_window_start(org, moment):
    """The start of the next sending window at or after `moment`."""
    if in_window(org, moment):
        return moment
    local = timezone.localtime(moment, org.tzinfo)
    start = local.replace(
        hour=org.quiet_hours_start.hour,
        minute=org.quiet_hours_start.minute,
        second=org.quiet_hours_start.second,
        microsecond=0,
    )
    if start <= local:
        start += timedelta(days=1)
    return start


def estimate_finish(org, count, rate, now=None):
    """When `count` sends at `rate` msg/s finish, sending only inside the org's window."""
    now = now or timezone.now()
    remaining = count / float(rate)
    moment = next_window_start(org, now)
    while remaining > 0:
        local = timezone.localtime(moment, org.tzinfo)
        # To the second: an end such as 20:59:59 must not end the window before `moment`.
        window_end = local.replace(
            hour=org.quiet_hours_end.hour,
            minute=org.quiet_hours_end.minute,
            second=org.quiet_hours_end.second,
            microsecond=0,
        )
        available = (window_end - local).total_seconds()
        if available <= 0:  # No sending window at all (it ends before it starts).
            return None
        if remaining <= available:
            return moment + timedelta(seconds=remaining)
        remaining -= available
        moment = next_window_start(org, window_end + timedelta(seconds=1))
    return moment


def preview(*, org, sender, body, kind, audience_filter=None, now=None):
    now = now or timezone.now()
    counts = eligibility.skip_counts(audience(org, kind, audience_filter), org=org, now=now)
    sendable = counts.pop("sendable")
    finish_at = estimate_finish(org, sendable, sender.throughput, now) if sendable else None
    duration = (finish_at - now) if finish_at else timedelta(0)
    warning = ""
    if duration > timedelta(days=1):
        rate = f"{float(sender.throughput):g}"  # 1, not the column's 1.00
        warning = (
            f"At {rate} message{'s' if rate != '1' else ''} a second "
            f"within sending hours, this takes more than a day. {FASTER_SENDER_HINT}"
        )
    segments = segment(body).segments
    return Preview(
        total=sendable + sum(counts.values()),
        sendable=sendable,
        skipped={reason: n for reason, n in counts.items() if n},
        finish_at=finish_at,
        duration=duration,
        segments=segments,
        warning=warning,
        saving=costs.skip_savings(skipped=counts, segments=segments, kind=sender.kind),
    )


# Starting, dispatching, cancelling ---------------------------------------------------------------


def broadcast_start(*, org, sender, body, kind, by, name="", audience_filter=None, now=None):
    """Create the broadcast and all its messages in bulk; sending starts in the dispatcher."""
    body = (body or "").strip()
    if not body:
        raise BroadcastRefused("Write the message first.")
    if sender.organization_id != org.id or not sender.is_active:
        raise BroadcastRefused("Choose one of your active sending numbers.")
    now = now or timezone.now()
    contacts = eligibility.check_contacts(audience(org, kind, audience_filter), org=org, now=now)
    rows = list(contacts.values_list("id", "phone_e164", "phone_raw", "skip_reason"))
    if not rows:
        raise BroadcastRefused("No contacts match this audience.")
    parts = segment(body)
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            organization=org,
            sender=sender,
            created_by=by,
            name=name[:200],
            body=body,
            audience=kind,
            audience_filter=audience_filter or {},
            state=Broadcast.State.SENDING,
            started_at=now,
            recipient_count=len(rows),
        )
        conversations = _conversations_for(org, [row[0] for row in rows])
        skipped = {}
        for start in range(0, len(rows), CREATE_BATCH):
            batch = []
            for contact_id, e164, raw, skip_reason in rows[start : start + CREATE_BATCH]:
                message = Message(
                    organization=org,
                    conversation_id=conversations[contact_id],
                    sender=sender,
                    broadcast=broadcast,
                    sent_by=by,
                    direction=Message.Direction.OUTBOUND,
                    to_number=e164 or raw,
                    from_number=sender.address,
                    body=body,
                    segments=max(parts.segments, 1),
                    encoding=parts.encoding,
                )
                if skip_reason:
                    message.status = Message.Status.SKIPPED
                    message.skip_reason = skip_reason
                    message.dispatch = Dispatch.DONE
                    message.final_at = now
                    skipped[skip_reason] = skipped.get(skip_reason, 0) + 1
                else:
                    message.dispatch = Dispatch.HELD
                batch.append(message)
            Message.objects.bulk_create(batch, batch_size=CREATE_BATCH)
        Broadcast.objects.filter(pk=broadcast.pk).update(skipped_counts=skipped)
        _touch_conversations(list(conversations.values()), body, now)
        enqueue_on_commit("conversations.tasks.dispatch_broadcast", broadcast.pk)
    broadcast.refresh_from_db()
    return broadcast


def _conversations_for(org, contact_ids):
    """{contact id: conversation id}, creating the missing conversations in bulk."""

    def existing_for(ids):
        found = {}
        for start in range(0, len(ids), 10000):
            chunk = ids[start : start + 10000]
            found.update(
                Conversation.objects.filter(organization=org, contact_id__in=chunk).values_list(
                    "contact_id", "id"
                )
            )
        return found

    existing = existing_for(contact_ids)
    missing = [cid for cid in contact_ids if cid not in existing]
    if missing:
        Conversation.objects.bulk_create(
            [Conversation(organization=org, contact_id=cid) for cid in missing],
            batch_size=CREATE_BATCH,
            ignore_conflicts=True,
        )
        existing.update(existing_for(missing))
    return existing


def _touch_conversations(conversation_ids, body, now):
    """A broadcast message is the newest message of each recipient's conversation: the list
    shows it and sorts by it, like any other message."""
    for start in range(0, len(conversation_ids), 10000):
        Conversation.objects.filter(pk__in=conversation_ids[start : start + 10000]).update(
            last_message_at=now,
            last_message_preview=body[:160],
            last_message_direction=Message.Direction.OUTBOUND,
        )


def _hold(broadcast, reason, until):
    Broadcast.objects.filter(pk=broadcast.pk).exclude(state=Broadcast.State.CANCELED).update(
        state=Broadcast.State.HELD, hold_reason=reason, resume_at=until
    )


def broadcast_dispatch(broadcast_id, now=None):
    """Release the next held messages to the send path, if the broadcast may send now.

    Returns how many were released. Called by the periodic dispatcher and on start.
    """
    now = now or timezone.now()
    broadcast = (
        Broadcast.objects.select_related("organization", "sender").filter(pk=broadcast_id).first()
    )
    if broadcast is None or broadcast.state not in (Broadcast.State.SENDING, Broadcast.State.HELD):
        return 0
    org, sender = broadcast.organization, broadcast.sender
    if not in_window(org, now):
        start = next_window_start(org, now)
        window = f"{org.quiet_hours_start:%-I:%M %p}–{org.quiet_hours_end:%-I:%M %p}"
        _hold(broadcast, f"Outside sending hours ({window}, {org.time_zone}).", start)
        return 0
    if sender.broadcasts_paused_until and sender.broadcasts_paused_until > now:
        _hold(broadcast, breaker.SENDER_PAUSED, sender.broadcasts_paused_until)
        return 0
    if breaker.sender_check(sender, now):
        _hold(broadcast, breaker.SENDER_HOLD, sender.broadcasts_paused_until)
        return 0
    if breaker.body_check(broadcast, now):
        _hold(broadcast, breaker.BODY_HOLD, broadcast.body_paused_until)
        return 0
    if broadcast.state == Broadcast.State.HELD:
        Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.HELD).update(
            state=Broadcast.State.SENDING, hold_reason="", resume_at=None
        )
    in_flight = broadcast.messages.filter(dispatch__in=[Dispatch.WAITING, Dispatch.CLAIMED]).count()
    room = math.ceil(float(sender.throughput) * RELEASE_AHEAD_SECONDS) - in_flight
    if room <= 0:
        return 0
    ids = list(
        broadcast.messages.filter(dispatch=Dispatch.HELD)
        .order_by("id")
        .values_list("id", flat=True)[:room]
    )
    if not ids:
        _finish_if_done(broadcast, now)
        return 0
    released = Message.objects.filter(pk__in=ids, dispatch=Dispatch.HELD).update(
        dispatch=Dispatch.WAITING, status_changed_at=now
    )
    # Into an empty pipeline (a start, a resume) the first chunks are staggered.
    staggered = bulksend.STAGGERED_CHUNKS if not in_flight else 0
    for chunk in bulksend.chunks(ids, bulksend.chunk_size(sender.throughput), staggered):
        enqueue("conversations.tasks.send_messages", chunk, queue=BULK)
    if len(ids) < room:  # That was the last of them.
        _finish_if_done(broadcast, now)
    return released


def _finish_if_done(broadcast, now):
    open_states = [Dispatch.HELD, Dispatch.WAITING, Dispatch.CLAIMED, Dispatch.UNKNOWN]
    if not broadcast.messages.filter(dispatch__in=open_states).exists():
        Broadcast.objects.filter(pk=broadcast.pk, state=Broadcast.State.SENDING).update(
            state=Broadcast.State.FINISHED, finished_at=now
        )


def broadcast_cancel(*, broadcast, by=None):
    """Stop what has not gone out; what is already with Twilio keeps its course."""
    now = timezone.now()
    with transaction.atomic():
        updated = Broadcast.objects.filter(
            pk=broadcast.pk,
            state__in=[Broadcast.State.SENDING, Broadcast.State.HELD, Broadcast.State.DRAFT],
        ).update(state=Broadcast.State.CANCELED, canceled_at=now, hold_reason="")
        if not updated:
            raise BroadcastRefused("This broadcast is not sending any more.")
        canceled = Message.objects.filter(
            broadcast=broadcast, dispatch__in=[Dispatch.HELD, Dispatch.WAITING]
        ).update(
            status=Message.Status.CANCELED,
            dispatch=Dispatch.DONE,
            final_at=now,
            status_changed_at=now,
        )
    return canceled


# A partially delivered broadcast message reached the number, so progress counts it delivered.
PROGRESS_GROUPS = {
    "queued": (Message.Status.PENDING,),
    "sent": Message.Status.AT_PROVIDER,
    "delivered": (*Message.Status.DELIVERED_OR_READ, Message.Status.PARTIALLY_DELIVERED),
    "failed": Message.Status.FAILED_OR_UNDELIVERED,
    "skipped": (Message.Status.SKIPPED,),
    "canceled": (Message.Status.CANCELED,),
}


def progress(broadcast):
    """Counts by what staff see (queued, sent, delivered, failed, skipped, canceled): one query."""
    by_status = dict(
        broadcast.messages.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    counts = {
        group: sum(by_status.get(s, 0) for s in statuses)
        for group, statuses in PROGRESS_GROUPS.items()
    }
    total = sum(counts.values())
    # Done means handed off: sent (whatever comes next), skipped, failed or canceled.
    done = total - counts["queued"]
    counts["total"] = total
    counts["done"] = done
    counts["percent"] = int(100 * done / total) if total else 100
    counts["skipped_by_reason"] = {
        SkipReason(reason).label: n for reason, n in (broadcast.skipped_counts or {}).items()
    }
    return counts


def still_changing(broadcast, progress, now=None):
    """Whether the broadcast page should keep asking: while it sends or is held, and after it
    finished until every message has its final status (a sent message that never hears more
    stops counting once it shows as Status Unavailable)."""
    if broadcast.state in (Broadcast.State.SENDING, Broadcast.State.HELD):
        return True
    if not (progress["queued"] or progress["sent"]):
        return False
    ended = broadcast.finished_at or broadcast.canceled_at
    now = now or timezone.now()
    return ended is None or now - ended < settings.STATUS_UNAVAILABLE_AFTER
