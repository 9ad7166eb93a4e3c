"""What a member's reply does to their consent, and the Review queue (SPEC §3).

`reply_apply` turns a classified inbound reply into a state change: an opt-out at once (and
whether the one confirmation text may go), an opt-in, or an item in the Review queue. Staff
decide an item with `review_decide` and may take it back with `review_undo` for a few
minutes; `review_deadlines_apply` (a periodic task) opts out every possible opt-out still
undecided 10 business days after it was received, and keeps the org alert about items waiting
more than one business day up to date.

Business days are Monday to Friday in the organization's time zone; public holidays are not
counted out (the deadline comes a little early on a holiday week, never late).
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from contacts.models import Contact, Organization
from deliverability.models import (
    Actor,
    AuditEvent,
    NumberState,
    OptIn,
    OptOutReason,
    OrgAlert,
    ReviewItem,
    StateChangeRefused,
)
from deliverability.replies import Intent, ReviewKind, Rule
from deliverability.services import alert_raise

REVIEW_BUSINESS_DAYS = 10  # 47 CFR 64.1200(a)(10): honoured within 10 business days
ALERT_AFTER_BUSINESS_DAYS = 1
UNDO_WINDOW = timedelta(minutes=10)

Decision = ReviewItem.Decision
Action = AuditEvent.Action


class ReviewRefused(StateChangeRefused):
    """A review decision the rules do not allow; the text is for staff."""


def add_business_days(moment, days, tz):
    """`moment` moved by `days` business days (negative: back), at the same local time."""
    local = timezone.localtime(moment, tz)
    step = 1 if days >= 0 else -1
    remaining = abs(days)
    while remaining:
        local += timedelta(days=step)
        if local.weekday() < 5:
            remaining -= 1
    return local


# Applying a reply ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    outcome: str  # for the event log
    confirm_opt_out: bool = False  # this very message opted the number out automatically


def reply_apply(*, org, contact, message, reply):
    """Apply a classified inbound `message` (a conversations Message) from `contact`."""
    phone = message.from_number
    cause = f"inbound reply ({reply.rule}): {message.body[:60]}"
    if reply.intent == Intent.OPT_OUT:
        reason = (
            OptOutReason.WRONG_NUMBER
            if reply.rule == Rule.WRONG_NUMBER
            else OptOutReason.STOP_KEYWORD
        )
        with transaction.atomic():
            # Locked first: of two STOPs processed at once, only the one that changed the
            # state earns the confirmation text.
            state = NumberState.objects.locked(org=org, phone=phone)
            was_opted_out = state.is_opted_out
            state.opt_out(reason=reason, cause=cause, contact=contact)
            _settle_pending(org, phone, "The member opted out with a later reply.")
        if was_opted_out:
            return Applied("already opted out")
        return Applied("opted out", confirm_opt_out=reply.rule != Rule.TWILIO)
    if reply.intent == Intent.OPT_IN:
        via = OptIn.START if reply.rule == Rule.START else OptIn.KEYWORD
        state = NumberState.objects.of(org=org, phone=phone)
        state.opt_in(via=via, cause=cause, contact=contact)
        if reply.rule == Rule.START:
            # START is consent given anew, by whoever has the number now (SPEC §2).
            Contact.objects.for_org(org).filter(phone_e164=phone).record_consent(
                timezone.localdate(getattr(message, "created_at", None) or timezone.now())
            )
        if not state.is_opted_out:
            _settle_resubscribes(org, phone, "The member opted back in with a later reply.")
        return Applied("opted in")
    if reply.intent == Intent.HELP:
        return Applied("help")
    state = NumberState.objects.of(org=org, phone=phone)
    if reply.intent == Intent.REVIEW and reply.review_kind == ReviewKind.OPT_OUT:
        if state.is_opted_out:
            return Applied("stored (already opted out)")
        review_open(org=org, contact=contact, message=message, reply=reply)
        return Applied("flagged for review")
    if reply.intent == Intent.REVIEW and state.may_lift_opt_out(OptIn.REVIEW):
        if org.any_inbound_resubscribes and state.may_lift_opt_out(OptIn.ANY_INBOUND):
            state.opt_in(via=OptIn.ANY_INBOUND, cause=cause, contact=contact)
            return Applied("opted in (any inbound message re-subscribes)")
        review_open(org=org, contact=contact, message=message, reply=reply)
        return Applied("resubscribe request flagged for review")
    if org.any_inbound_resubscribes:
        state.opt_in(via=OptIn.ANY_INBOUND, cause=cause, contact=contact)
    return Applied("stored")


def review_open(*, org, contact, message, reply, received_at=None):
    """Queue `message` for staff, due 10 business days after it was received (once)."""
    received_at = received_at or message.created_at
    item, _ = ReviewItem.objects.get_or_create(
        inbound_message_id=message.pk,
        defaults={
            "organization": org,
            "phone": message.from_number,
            "contact": contact,
            "body": message.body,
            "kind": reply.review_kind,
            "rule": reply.rule,
            "received_at": received_at,
            "due_at": add_business_days(received_at, REVIEW_BUSINESS_DAYS, org.tzinfo),
        },
    )
    return item


def _settle_resubscribes(org, phone, note):
    """Once a number is subscribed again, its resubscribe requests leave nothing to decide."""
    ReviewItem.objects.pending().filter(
        organization=org, phone=phone, kind=ReviewItem.Kind.RESUBSCRIBE
    ).update(decision=Decision.RESUBSCRIBE, decided_at=timezone.now(), note=note)


def _settle_pending(org, phone, note):
    """Once a number is opted out, its possible opt-outs leave nothing to decide."""
    ReviewItem.objects.pending_opt_outs().filter(organization=org, phone=phone).update(
        decision=Decision.OPT_OUT, decided_at=timezone.now(), note=note
    )


# Staff decisions -------------------------------------------------------------------------------

ALLOWED = {
    ReviewItem.Kind.OPT_OUT: {Decision.OPT_OUT, Decision.NOT_OPT_OUT},
    ReviewItem.Kind.RESUBSCRIBE: {Decision.RESUBSCRIBE, Decision.KEEP_OPTED_OUT},
}


def _quote(item):
    return f"Reply: “{item.body[:200]}” ({item.rule_label})"


def _note(item, note):
    return f"{note.strip()}\n{_quote(item)}" if note.strip() else _quote(item)


def review_decide(*, item, decision, by, note=""):
    """Staff decide a pending item with one click; audited. Returns the item."""
    if decision not in ALLOWED[item.kind]:
        raise ReviewRefused("That decision does not apply to this reply.")
    org, now = item.organization, timezone.now()
    actor = Actor(user=by, note=_note(item, note), source_page="review", contact=item.contact)
    with transaction.atomic():
        claimed = ReviewItem.objects.filter(pk=item.pk, decision=Decision.PENDING).update(
            decision=decision, decided_at=now, decided_by=by, note=note.strip()
        )
        if not claimed:
            raise ReviewRefused("This reply has already been reviewed.")
        state = NumberState.objects.locked(org=org, phone=item.phone)
        changed = False
        if decision == Decision.OPT_OUT:
            if not state.is_opted_out:
                state.opt_out(reason=OptOutReason.STOP_KEYWORD, **_as_kwargs(actor))
                changed = True
            else:  # Opted out meanwhile (a later STOP): the decision is still on record.
                state.audit(Action.REVIEW_CONFIRMED, actor)
        elif decision == Decision.RESUBSCRIBE:
            if not state.may_lift_opt_out(OptIn.REVIEW):
                raise ReviewRefused(
                    "Only the member can lift this opt-out: they must text START to your number."
                )
            state.opt_in(via=OptIn.REVIEW, **_as_kwargs(actor))
            changed = True
        elif decision == Decision.NOT_OPT_OUT:
            state.audit(Action.REVIEW_DISMISSED, actor)
        else:
            state.audit(Action.REVIEW_KEPT_OPTED_OUT, actor)
        ReviewItem.objects.filter(pk=item.pk).update(changed_state=changed)
        if decision == Decision.OPT_OUT:
            _settle_pending(org, item.phone, "Opted out on another reply from the same number.")
    review_alert_refresh(org=org, now=now)
    item.refresh_from_db()
    return item


def _as_kwargs(actor):
    return {
        "by": actor.user,
        "note": actor.note,
        "source_page": actor.source_page,
        "contact": actor.contact,
    }


def may_undo(item, now=None):
    now = now or timezone.now()
    return (
        item.decision not in (Decision.PENDING, Decision.DEADLINE)
        and item.decided_by_id is not None  # only a staff decision is taken back
        and item.decided_at is not None
        and now - item.decided_at <= UNDO_WINDOW
    )


def review_undo(*, item, by):
    """Take back a decision made in the last few minutes: the item waits again; audited."""
    now = timezone.now()
    if not may_undo(item, now):
        raise ReviewRefused("This decision can no longer be undone.")
    org = item.organization
    actor = Actor(
        user=by,
        note=f"Undid “{item.get_decision_display()}”. {_quote(item)}",
        source_page="review",
        contact=item.contact,
    )
    with transaction.atomic():
        claimed = ReviewItem.objects.filter(
            pk=item.pk, decision=item.decision, decided_at=item.decided_at
        ).update(decision=Decision.PENDING, decided_at=None, decided_by=None, changed_state=False)
        if not claimed:
            raise ReviewRefused("This decision has changed meanwhile; reload the page.")
        state = NumberState.objects.locked(org=org, phone=item.phone)
        if item.changed_state and item.decision == Decision.OPT_OUT:
            if state.may_lift_opt_out(OptIn.UNDO):
                state.opt_in(via=OptIn.UNDO, **_as_kwargs(actor))
        elif (
            item.changed_state and item.decision == Decision.RESUBSCRIBE and not state.is_opted_out
        ):
            state.opt_out(reason=OptOutReason.STOP_KEYWORD, **_as_kwargs(actor))
        state.audit(Action.REVIEW_UNDONE, actor)
    review_alert_refresh(org=org, now=now)
    item.refresh_from_db()
    return item


# Deadlines and the org alert -------------------------------------------------------------------


def review_deadlines_apply(now=None):
    """Opt out every possible opt-out undecided at its deadline; refresh the org alerts.

    Returns how many numbers were opted out.
    """
    now = now or timezone.now()
    overdue = ReviewItem.objects.pending_opt_outs().filter(due_at__lte=now)
    opted_out = 0
    for item in overdue.select_related("organization", "contact")[:5000]:
        with transaction.atomic():
            claimed = ReviewItem.objects.filter(pk=item.pk, decision=Decision.PENDING).update(
                decision=Decision.DEADLINE, decided_at=now
            )
            if not claimed:
                continue
            state = NumberState.objects.locked(org=item.organization, phone=item.phone)
            if state.is_opted_out:
                continue
            state.opt_out(
                reason=OptOutReason.STOP_KEYWORD,
                cause="deadline",
                note=f"Undecided 10 business days after it was received. {_quote(item)}",
                contact=item.contact,
            )
            ReviewItem.objects.filter(pk=item.pk).update(changed_state=True)
            _settle_pending(item.organization, item.phone, "Opted out at another reply's deadline.")
            opted_out += 1
    org_ids = set(
        ReviewItem.objects.pending().order_by().values_list("organization_id", flat=True).distinct()
    )
    org_ids |= set(
        OrgAlert.objects.filter(
            kind=OrgAlert.Kind.REVIEW_OVERDUE, resolved_at__isnull=True
        ).values_list("organization_id", flat=True)
    )
    for org_id in sorted(org_ids):
        review_alert_refresh(org_id=org_id, now=now)
    return opted_out


def review_alert_refresh(*, org=None, org_id=None, now=None):
    """Open (or update) the org alert while an item waits more than one business day; close
    it when none does."""
    now = now or timezone.now()
    org = org or Organization.objects.get(pk=org_id)
    cutoff = add_business_days(now, -ALERT_AFTER_BUSINESS_DAYS, org.tzinfo)
    waiting = ReviewItem.objects.for_org(org).pending().filter(received_at__lte=cutoff)
    count = waiting.count()
    open_alert = OrgAlert.objects.filter(
        organization=org, kind=OrgAlert.Kind.REVIEW_OVERDUE, resolved_at__isnull=True
    )
    if not count:
        open_alert.update(resolved_at=now)
        return 0
    oldest = waiting.order_by("due_at").values_list("due_at", flat=True).first()
    due = timezone.localtime(oldest, org.tzinfo).strftime("%b %-d")
    text = (
        f"{count} repl{'y' if count == 1 else 'ies'} in the Review queue waiting more than a "
        f"business day; the first is due {due} (undecided opt-outs are applied then)."
    )
    if not open_alert.update(message=text, occurrences=count, last_seen_at=now):
        alert_raise(org=org, kind=OrgAlert.Kind.REVIEW_OVERDUE, message=text)
    return count
