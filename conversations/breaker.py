"""The circuit breaker (SPEC §5): it tells a broken sender from a normal list.

A sender is broken when a high share of its recent sends draw sender-category errors (21606,
30034, …): at least MIN_SHARE of its last RECENT_SENDS sends, and at least the org's
`circuit_breaker_errors` (default 20). Its broadcasts then pause for `circuit_breaker_minutes`
and the org alert is raised. Content-category errors (30007 carrier filtering) are about one
text, not the sender: the same rule over the last sends of one body pauses the broadcasts of
that body, and the sender's other traffic goes on. A list where 2 % of the numbers draw 30007
never trips it, however fast the sender.

The rule is checked whenever such an error is recorded, from the create call or from a status
callback, so the error that trips it stops the broadcast at once: the send path holds back any
broadcast message claimed after that (`holds`). The dispatcher checks it too on every tick.
"""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from conversations.models import Broadcast, Message, Sender
from deliverability import catalogue
from deliverability import services as deliverability_services
from deliverability.models import OrgAlert

RECENT_SENDS = 100
MIN_SHARE = 0.2
SENDER_HOLD = "Paused by the circuit breaker after many carrier errors."
SENDER_PAUSED = "Paused by the circuit breaker."
BODY_HOLD = (
    "Paused: carriers filtered this text as spam. Rewrite it, then wait 15–30 minutes "
    "before sending again."
)
SENDER_CODES = catalogue.codes_in(catalogue.Category.SENDER)
CONTENT_CODES = catalogue.codes_in(catalogue.Category.CONTENT)
NOT_SENT = [Message.Status.PENDING, Message.Status.SKIPPED, Message.Status.CANCELED]


def _tripped(sends, codes, threshold):
    """Whether enough of the most recent `sends` failed with one of `codes`."""
    recent = list(sends.exclude(status__in=NOT_SENT).order_by("-id")[:RECENT_SENDS])
    errors = sum(1 for code in recent if code in codes)
    return errors >= threshold and errors >= MIN_SHARE * len(recent)


def _outbound(sender_id):
    return Message.objects.filter(
        sender_id=sender_id, direction=Message.Direction.OUTBOUND
    ).values_list("error_code", flat=True)


def sender_check(sender, now=None):
    """Pause the sender's broadcasts if its recent sends say it is broken; returns whether it
    is paused now."""
    now = now or timezone.now()
    if sender.broadcasts_paused_until and sender.broadcasts_paused_until > now:
        return True
    org = sender.organization
    if not _tripped(_outbound(sender.pk), SENDER_CODES, org.circuit_breaker_errors):
        return False
    until = now + timedelta(minutes=org.circuit_breaker_minutes)
    paused = (
        Sender.objects.filter(pk=sender.pk)
        .filter(Q(broadcasts_paused_until__isnull=True) | Q(broadcasts_paused_until__lte=now))
        .update(broadcasts_paused_until=until)
    )
    sender.broadcasts_paused_until = until
    if paused:  # One alert per trip, however many workers saw it.
        deliverability_services.alert_raise(
            org=org,
            kind=OrgAlert.Kind.CIRCUIT_BREAKER,
            sender_ref=sender.address,
            message=f"Broadcasts from {sender} are paused: {MIN_SHARE:.0%} or more of its "
            f"last {RECENT_SENDS} messages failed with a sender error. Check the number's "
            "registration in Twilio.",
        )
        _hold(sender.broadcasts.all(), SENDER_HOLD, until)
    return True


def body_check(broadcast, now=None):
    """Pause the broadcast if carriers filter its text; returns whether it is paused now."""
    now = now or timezone.now()
    if broadcast.body_paused_until and broadcast.body_paused_until > now:
        return True
    sends = _outbound(broadcast.sender_id).filter(body=broadcast.body)
    org = broadcast.organization
    if not _tripped(sends, CONTENT_CODES, org.circuit_breaker_errors):
        return False
    until = now + timedelta(minutes=org.circuit_breaker_minutes)
    same_text = Broadcast.objects.filter(sender_id=broadcast.sender_id, body=broadcast.body)
    same_text.filter(state__in=[Broadcast.State.SENDING, Broadcast.State.HELD]).update(
        body_paused_until=until
    )
    broadcast.body_paused_until = until
    _hold(same_text, BODY_HOLD, until)
    return True


def _hold(broadcasts, reason, until):
    broadcasts.filter(state=Broadcast.State.SENDING).update(
        state=Broadcast.State.HELD, hold_reason=reason, resume_at=until
    )


def errors_recorded(messages):
    """Check the rule for the senders and texts of these failed messages (after the errors
    are stored)."""
    senders, bodies = set(), set()
    for message in messages:
        if message.sender_id is None:
            continue
        if message.error_code in SENDER_CODES:
            senders.add(message.sender_id)
        elif message.error_code in CONTENT_CODES and message.broadcast_id:
            bodies.add(message.broadcast_id)
    for sender in Sender.objects.select_related("organization").filter(pk__in=senders):
        sender_check(sender)
    for broadcast in Broadcast.objects.select_related("organization").filter(pk__in=bodies):
        body_check(broadcast)


def holds(message, now=None):
    """Whether the breaker holds back this broadcast message (its sender or its text is
    paused)."""
    if message.broadcast_id is None:
        return False
    now = now or timezone.now()
    return (
        Sender.objects.filter(pk=message.sender_id, broadcasts_paused_until__gt=now).exists()
        or Broadcast.objects.filter(pk=message.broadcast_id, body_paused_until__gt=now).exists()
    )
