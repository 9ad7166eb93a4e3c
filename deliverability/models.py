"""Whether a number can and may be texted (SPEC §2–§5).

NumberState is per organization and number; NumberFacts is global (shared by every org).
Both are keyed by the E.164 number, not by contact: two contacts sharing a number share its
state, and a contact that changes number takes the state of its new number.
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from contacts.models import Contact, Organization
from contacts.queries import forget_counts
from deliverability import catalogue
from deliverability.replies import RULE_LABELS


class InvalidSource(models.TextChoices):
    MANUAL = "manual", "Manual"
    AUTOMATIC = "automatic", "Automatic"


class OptOutReason(models.TextChoices):
    STOP_KEYWORD = "stop_keyword", "STOP keyword"
    CARRIER_STOP = "carrier_stop", "Carrier STOP"
    DEACTIVATED = "deactivated", "Deactivated"
    STAFF = "staff", "Staff"
    # The member replied "wrong number": only START from the number lifts it (SPEC §3).
    WRONG_NUMBER = "wrong_number", "Wrong number"
    # Lookup's reassigned-number check: the number changed owners after consent was given.
    REASSIGNED = "reassigned", "Reassigned number"


class SkipReason(models.TextChoices):
    """In the order of SPEC §5: when several apply, the first is recorded."""

    OPTED_OUT = "opted_out", "Opted out"
    PENDING_REVIEW = "pending_review", "Reply waiting in the Review queue"
    MARKED_INVALID = "marked_invalid", "Marked invalid"
    INVALID_NUMBER = "invalid_number", "Not a phone number"
    LANDLINE = "landline", "Landline"
    PAUSED = "paused", "Paused"
    RECENT_ERRORS = "recent_errors", "Recent errors"
    GLOBAL_LIFETIME_ERROR_COUNT = "global_lifetime_error_count", "Errors across all organizations"
    DUPLICATE_NUMBER = "duplicate_number", "Same number as another recipient"


class LineType(models.TextChoices):
    """Twilio Lookup v2 line_type_intelligence types, plus our own "unknown"."""

    MOBILE = "mobile", "Mobile"
    LANDLINE = "landline", "Landline"
    FIXED_VOIP = "fixedVoip", "Fixed VoIP"
    NON_FIXED_VOIP = "nonFixedVoip", "Non-fixed VoIP"
    PERSONAL = "personal", "Personal"
    TOLL_FREE = "tollFree", "Toll-free"
    PREMIUM = "premium", "Premium"
    SHARED_COST = "sharedCost", "Shared cost"
    UAN = "uan", "UAN"
    VOICEMAIL = "voicemail", "Voicemail"
    PAGER = "pager", "Pager"
    UNKNOWN = "unknown", "Unknown"


# Line types that cannot take SMS (SPEC §2): a lookup answering one sets the automatic flag.
NOT_SMS_CAPABLE = frozenset(
    {
        LineType.LANDLINE,
        LineType.PAGER,
        LineType.PREMIUM,
        LineType.VOICEMAIL,
        LineType.SHARED_COST,
        LineType.UAN,
    }
)


class LineStatus(models.TextChoices):
    """Twilio Lookup v2 line_status (beta): the number's state on its carrier's network."""

    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive (disconnected)"
    REACHABLE = "reachable", "Reachable"
    UNREACHABLE = "unreachable", "Unreachable (handset off or out of coverage)"
    UNKNOWN = "unknown", "Unknown"


# Line statuses that disprove a "Disconnected (carrier line status)" flag on Re-check.
LIVE_LINE_STATUSES = frozenset({LineStatus.ACTIVE, LineStatus.REACHABLE})


class Reassigned(models.TextChoices):
    """Twilio Lookup v2 reassigned_number.is_number_reassigned."""

    YES = "yes", "Reassigned since consent"
    NO = "no", "Same owner since consent"
    NO_DATA = "no_data_available", "No data"


# The error rules of the pre-send checks (SPEC §5), read by deliverability.eligibility and
# counted by NumberState.record_error and NumberFacts.record_error; defined here once.
RECENT_ERRORS_THRESHOLD = 5  # recent_errors: this many consecutive number-attributable errors…
ERROR_WINDOW = timedelta(days=80)  # …the fifth of them within this window
GLOBAL_ERRORS_THRESHOLD = 5  # global_lifetime_error_count: more than this since the heartbeat
RETRY_AFTER = timedelta(days=80)  # a number not attempted for this long gets one new attempt
STREAK_TIMES_KEPT = RECENT_ERRORS_THRESHOLD
GLOBAL_TIMES_KEPT = 2 * GLOBAL_ERRORS_THRESHOLD  # the rule needs threshold + 1: ample


MAX_PAUSE = timedelta(days=30)


class StateChangeRefused(Exception):
    """A state change the rules do not allow; the message is written for staff."""


class OptIn:
    """How an opt-in reaches us; decides which opt-outs it may lift (SPEC §2, §3)."""

    START = "start"  # START (or COMENZAR) from the number itself: lifts every reason.
    KEYWORD = "keyword"  # YES, UNSTOP: every reason but a wrong or reassigned number.
    ANY_INBOUND = "any_inbound"  # Any message, when the org enables it: lifts a STOP keyword.
    REVIEW = "review"  # Resubscribe wording, taken by staff in the Review queue.
    UNDO = "undo"  # Staff undo their own "Opt out" review decision within minutes.
    STAFF = "staff"  # A manager, with a note: lifts only a staff-made opt-out.


LIFTABLE = {
    OptIn.START: set(OptOutReason.values),
    # A wrong or reassigned number is someone else's now: only START from it is consent.
    OptIn.KEYWORD: set(OptOutReason.values) - {OptOutReason.WRONG_NUMBER, OptOutReason.REASSIGNED},
    OptIn.ANY_INBOUND: {OptOutReason.STOP_KEYWORD},
    OptIn.REVIEW: {OptOutReason.STOP_KEYWORD, OptOutReason.STAFF},
    OptIn.UNDO: {OptOutReason.STOP_KEYWORD},
    OptIn.STAFF: {OptOutReason.STAFF},
}


@dataclass(frozen=True)
class Actor:
    """Who changes a state: a staff user, or the system and its cause."""

    user: object = None
    cause: str = ""
    note: str = ""
    source_page: str = ""
    contact: Contact | None = None


def _locked_row(model, **key):
    """The row of `model` with `key`, created if missing and locked for this transaction."""
    row = model.objects.select_for_update().filter(**key).first()
    if row is None:
        # INSERT … ON CONFLICT DO NOTHING: another transaction may be creating it right now.
        model.objects.bulk_create([model(**key)], ignore_conflicts=True)
        row = model.objects.select_for_update().get(**key)
    return row


def transition(change):
    """A change of a number's state, in one transaction: re-read the row under lock (created
    if missing), let `change` decide, and when it returns an audit action, save the row and
    record who did it and what changed.

    `change(state, actor, ...)` raises StateChangeRefused, returns None to leave the state as it
    is without a trace (an automatic change that has nothing to do), or returns the action.
    The method takes the actor's parts as keyword arguments: `by` (the staff user), `cause`
    (what made the system act), `note`, `source_page`, `contact`.
    """

    @functools.wraps(change)
    def method(self, *args, by=None, cause="", note="", source_page="", contact=None, **kwargs):
        if not self.phone:
            raise StateChangeRefused("This contact has no valid phone number.")
        actor = Actor(by, cause, note, source_page, contact)
        with transaction.atomic():
            self.lock()
            before = self.snapshot()
            action = change(self, actor, *args, **kwargs)
            if action is None:
                return self
            self.save()
            self.audit(action, actor, before=before)
            # The lists' Active/Invalid/Opted-Out counts may have changed.
            forget_counts(self.organization_id)
        return self

    return method


class NumberStateQuerySet(models.QuerySet):
    def for_org(self, organization):
        return self.filter(organization=organization)

    def invalid(self):
        return self.exclude(invalid_source="")

    def opted_out(self):
        return self.exclude(opt_out_reason="")

    def of(self, *, org, phone):
        """The state of `phone` in `org`, unsaved and blank when nothing was ever recorded."""
        return self.filter(organization=org, phone=phone).first() or NumberState(
            organization=org, phone=phone
        )

    def locked(self, *, org, phone):
        """The state row of (org, phone), created if missing and locked for this transaction
        (`org` an Organization or its id).

        The lock order (conversations/events.py): a NumberState before the NumberFacts of its
        number; `with_facts` takes both in that order.
        """
        org_id = org.pk if isinstance(org, Organization) else org
        return _locked_row(NumberState, organization_id=org_id, phone=phone)

    def with_facts(self, *, org, phone):
        """Lock the number's state in `org`, then its global facts, creating them if missing.
        Returns (state, facts)."""
        return self.locked(org=org, phone=phone), NumberFacts.objects.locked(phone=phone)

    def end_expired_pauses(self, now=None):
        """End every pause whose time has come (the periodic task). Returns how many ended."""
        now = now or timezone.now()
        ended = 0
        for state in self.filter(paused_until__lte=now).order_by()[:10000]:
            state.end_pause(now, cause="pause ended")
            ended += state.paused_until is None  # not if it was made longer meanwhile
        return ended


class NumberState(models.Model):
    """A number's state within one organization: Invalid flag, opt-out, pause, error streak."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="number_states"
    )
    phone = models.CharField(max_length=20, help_text="E.164")

    # Invalid flag. Empty source means not flagged.
    invalid_source = models.CharField(
        max_length=10, choices=InvalidSource.choices, blank=True, default=""
    )
    invalid_code = models.CharField(
        max_length=16, blank=True, help_text='The Twilio error code, or "lookup".'
    )
    invalid_reason = models.CharField(max_length=200, blank=True)
    invalid_at = models.DateTimeField(null=True, blank=True)

    # Opt-out. Empty reason means subscribed.
    opt_out_reason = models.CharField(
        max_length=16, choices=OptOutReason.choices, blank=True, default=""
    )
    opted_out_at = models.DateTimeField(null=True, blank=True)

    paused_until = models.DateTimeField(null=True, blank=True)

    # Error history for the recent_errors rule (SPEC §5), kept here so that the checks never
    # scan the message table: the consecutive number-attributable errors since the last
    # sent/delivered outcome, and the times of the latest few of them (newest first).
    error_streak = models.PositiveIntegerField(default=0)
    error_streak_times = models.JSONField(default=list, blank=True)
    streak_fifth_error_at = models.DateTimeField(
        null=True, blank=True, help_text="The 5th newest error of the current streak."
    )
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    objects = NumberStateQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "phone"], name="one_number_state_per_org"
            ),
            models.CheckConstraint(
                condition=Q(invalid_source="") | ~Q(invalid_at=None),
                name="invalid_flag_has_time",
            ),
            models.CheckConstraint(
                condition=Q(opt_out_reason="") | ~Q(opted_out_at=None),
                name="opt_out_has_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "phone"],
                condition=~Q(invalid_source=""),
                name="numberstate_invalid",
            ),
            models.Index(
                fields=["organization", "phone"],
                condition=~Q(opt_out_reason=""),
                name="numberstate_opted_out",
            ),
            models.Index(
                fields=["paused_until"],
                condition=Q(paused_until__isnull=False),
                name="numberstate_paused",
            ),
        ]

    def __str__(self):
        return f"{self.phone} in {self.organization_id}"

    @property
    def is_invalid(self):
        return bool(self.invalid_source)

    @property
    def is_opted_out(self):
        return bool(self.opt_out_reason)

    def is_paused(self, now):
        return self.paused_until is not None and self.paused_until > now

    def may_lift_opt_out(self, via):
        return self.is_opted_out and self.opt_out_reason in LIFTABLE[via]

    @property
    def may_recheck(self):
        """Only automatic flags a lookup can disprove (21614, 30006, lookup, line_status) may be
        re-checked."""
        return (
            self.invalid_source == InvalidSource.AUTOMATIC
            and self.invalid_code in catalogue.RECHECKABLE_INVALID_CODES
        )

    def snapshot(self):
        """The parts of a number's state that staff care about, for the audit trail."""
        return {
            "invalid_source": self.invalid_source,
            "invalid_code": self.invalid_code,
            "invalid_reason": self.invalid_reason,
            "opt_out_reason": self.opt_out_reason,
            "opted_out_at": self.opted_out_at.isoformat() if self.opted_out_at else None,
            "paused_until": self.paused_until.isoformat() if self.paused_until else None,
        }

    def lock(self):
        """Re-read this number's row under lock for the open transaction, creating it if
        missing (an unsaved blank state becomes the stored one)."""
        row = NumberState.objects.locked(org=self.organization_id, phone=self.phone)
        for field in self._meta.concrete_fields:
            setattr(self, field.attname, getattr(row, field.attname))
        self._state.adding, self._state.db = False, row._state.db
        return self

    def audit(self, action, actor, *, before=None):
        """Record a decision on the number; `before` is its state before, when it changed."""
        return AuditEvent.objects.create(
            organization_id=self.organization_id,
            phone=self.phone,
            contact=actor.contact,
            actor=actor.user,
            system_cause=actor.cause,
            action=action,
            before=self.snapshot() if before is None else before,
            after=self.snapshot(),
            note=actor.note,
            source_page=actor.source_page,
        )

    # Transitions (SPEC §2, §4, §5): each one audited, each one here. -------------------------

    @transition
    def mark_invalid(self, actor):
        """Staff flag a number invalid by hand (no failed reason)."""
        if self.is_invalid:
            raise StateChangeRefused("This number is already marked as invalid.")
        self.invalid_source = InvalidSource.MANUAL
        self.invalid_code = ""
        self.invalid_reason = ""
        self.invalid_at = timezone.now()
        return AuditEvent.Action.MARK_INVALID

    @transition
    def mark_valid(self, actor):
        """Staff reverse a manual flag. An automatic flag is refused with the way out."""
        if not self.is_invalid:
            raise StateChangeRefused("This number is not marked as invalid.")
        if self.invalid_source == InvalidSource.AUTOMATIC:
            raise StateChangeRefused(
                f"This number was flagged automatically ({self.invalid_reason}) and cannot be "
                "marked valid. Update the phone number in the member's profile instead."
            )
        self._clear_invalid()
        return AuditEvent.Action.MARK_VALID

    def _clear_invalid(self):
        self.invalid_source = ""
        self.invalid_code = ""
        self.invalid_reason = ""
        self.invalid_at = None

    @transition
    def flag_automatically(self, actor, *, code, reason):
        """The system flags a number invalid: a failed send's code, or "lookup" for a line type.

        A manual flag becomes automatic (it now has a failed reason); an existing automatic flag
        is left as it is.
        """
        if self.invalid_source == InvalidSource.AUTOMATIC:
            return None
        self.invalid_source = InvalidSource.AUTOMATIC
        self.invalid_code = str(code)
        self.invalid_reason = reason
        self.invalid_at = timezone.now()
        return AuditEvent.Action.AUTO_INVALID

    @transition
    def opt_out(self, actor, *, reason):
        """Opt a number out with a reason. An existing opt-out keeps its first reason and date.

        A pause ends here: an opt-out supersedes it (a deactivation during a pause is an opt-out).
        """
        if reason not in OptOutReason.values:
            raise ValueError(f"unknown opt-out reason {reason!r}")
        if reason == OptOutReason.STAFF and actor.user is None:
            raise ValueError("a staff opt-out needs the staff user")
        if self.is_opted_out:
            if actor.user is not None:
                raise StateChangeRefused("This number is already opted out.")
            return None
        self.opt_out_reason = reason
        self.opted_out_at = timezone.now()
        self.paused_until = None
        return AuditEvent.Action.OPT_OUT

    @transition
    def opt_in(self, actor, *, via):
        """Lift an opt-out under the rules of SPEC §2; staff only a staff-made one, with a note."""
        if via == OptIn.STAFF and not actor.note.strip():
            raise StateChangeRefused("Please say why the opt-out is lifted (a note is required).")
        if not self.is_opted_out:
            if via == OptIn.STAFF:
                raise StateChangeRefused("This number is not opted out.")
            return None
        if not self.may_lift_opt_out(via):
            if via == OptIn.STAFF:
                raise StateChangeRefused(
                    "Only the contact can lift this opt-out "
                    f"({self.get_opt_out_reason_display()}): they must text START to your number."
                )
            return None
        self.opt_out_reason = ""
        self.opted_out_at = None
        return AuditEvent.Action.OPT_IN

    @transition
    def pause(self, actor, *, until):
        """Stop messaging for a while (at most 30 days); the contact stays subscribed."""
        now = timezone.now()
        if until <= now:
            raise StateChangeRefused("A pause must end in the future.")
        if until > now + MAX_PAUSE:
            raise StateChangeRefused("A pause can last at most 30 days.")
        if self.is_opted_out:
            raise StateChangeRefused("This number is opted out; there is nothing to pause.")
        self.paused_until = until
        return AuditEvent.Action.PAUSE

    @transition
    def resume(self, actor):
        if not self.is_paused(timezone.now()):
            raise StateChangeRefused("Messaging to this number is not paused.")
        self.paused_until = None
        return AuditEvent.Action.RESUME

    @transition
    def end_pause(self, actor, now):
        """The pause has run its time (the periodic task); a pause made longer meanwhile stays."""
        if self.paused_until is None or self.paused_until > now:
            return None
        self.paused_until = None
        return AuditEvent.Action.PAUSE_ENDED

    @transition
    def recheck(self, actor, *, result):
        """A fresh lookup (`result`, a deliverability.lookups.LookupResult) clears an automatic
        flag only when it disproves it; either way it is audited."""
        if self.may_recheck and self.disproved_by(result):
            self._clear_invalid()
            return AuditEvent.Action.AUTO_VALID
        return AuditEvent.Action.RECHECK

    def disproved_by(self, result):
        """Whether a fresh lookup shows the automatic flag no longer holds: for a disconnected
        number, a carrier line status that is live again; otherwise an SMS-capable line type."""
        if self.invalid_code == catalogue.LINE_STATUS:
            return result.line_status in LIVE_LINE_STATUSES and result.is_sms_capable
        return result.is_sms_capable and result.line_type not in ("", LineType.UNKNOWN)

    def record_error(self, at):
        """A number-attributable error of a send attempted at `at` joins the streak, unless a
        success came after the attempt (callbacks arrive out of order). The caller saves."""
        if self.last_success_at is None or at > self.last_success_at:
            times = sorted([*filter(None, self.error_streak_times), at.isoformat()], reverse=True)
            self.error_streak_times = times[:STREAK_TIMES_KEPT]
            self.error_streak += 1
            if len(self.error_streak_times) >= RECENT_ERRORS_THRESHOLD:
                fifth = self.error_streak_times[RECENT_ERRORS_THRESHOLD - 1]
                self.streak_fifth_error_at = datetime.fromisoformat(fifth)
        self.last_error_at = max(filter(None, [self.last_error_at, at]))

    def record_success(self, at):
        """A sent (final) or delivered outcome of a send attempted at `at` ends the streak of
        errors before it; errors of later attempts still count (callbacks arrive out of order).
        Returns whether anything changed (the caller saves)."""
        if self.last_success_at is not None and at <= self.last_success_at:
            return False
        self.last_success_at = at
        kept = [t for t in self.error_streak_times if datetime.fromisoformat(t) > at]
        self.error_streak = len(kept)
        self.error_streak_times = kept
        self.streak_fifth_error_at = (
            datetime.fromisoformat(kept[RECENT_ERRORS_THRESHOLD - 1])
            if len(kept) >= RECENT_ERRORS_THRESHOLD
            else None
        )
        return True


class NumberFactsQuerySet(models.QuerySet):
    def locked(self, *, phone):
        """The global facts row of `phone`, created if missing and locked for this transaction
        (after any NumberState of the number: see NumberState.objects.with_facts)."""
        return _locked_row(NumberFacts, phone=phone)


class NumberFacts(models.Model):
    """What is known about a number everywhere: its line type, deactivation, heartbeats, errors."""

    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    line_type = models.CharField(max_length=16, choices=LineType.choices, blank=True)
    line_type_raw = models.CharField(
        max_length=64, blank=True, help_text="What the lookup said, verbatim."
    )
    carrier_name = models.CharField(max_length=200, blank=True)
    looked_up_at = models.DateTimeField(null=True, blank=True)
    lookup_error = models.CharField(max_length=200, blank=True)
    # The carrier's line status (Lookup's line_status package, when an org's lookups include it).
    line_status = models.CharField(max_length=12, choices=LineStatus.choices, blank=True)
    line_status_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Number-attributable errors in every org since the latest heartbeat
    # (global_lifetime_error_count), and the lifetime total for staff and reports.
    errors_since_heartbeat = models.PositiveIntegerField(default=0)
    # The times of the latest errors (newest first, a few kept), so that a heartbeat reported
    # late, after newer errors, resets only the errors that came before it.
    recent_error_times = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=16, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NumberFactsQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "number facts"
        indexes = [
            models.Index(fields=["looked_up_at"], name="numberfacts_looked_up"),
        ]

    def __str__(self):
        return self.phone

    def record_error(self, at, code):
        """A number-attributable error, in any org, of a send attempted at `at`: it counts
        since the latest heartbeat unless the heartbeat came later. The caller saves."""
        times = sorted([*self.recent_error_times, at.isoformat()], reverse=True)
        self.recent_error_times = times[:GLOBAL_TIMES_KEPT]
        if self.last_heartbeat_at is None or at > self.last_heartbeat_at:
            self.errors_since_heartbeat += 1
        self.error_count += 1
        self.last_error_at = max(filter(None, [self.last_error_at, at]))
        self.last_error_code = str(code)

    def record_heartbeat(self, at):
        """A sign of life from the number (a delivery, an inbound reply, a click) at `at`.

        Errors after it still count: it may be reported late. Returns whether anything changed
        (the caller saves)."""
        if self.last_heartbeat_at is not None and at <= self.last_heartbeat_at:
            return False
        self.last_heartbeat_at = at
        self.errors_since_heartbeat = sum(
            1 for t in self.recent_error_times if datetime.fromisoformat(t) > at
        )
        return True

    @property
    def is_sms_capable(self):
        return self.line_type not in NOT_SMS_CAPABLE


class AuditEvent(models.Model):
    """Every change to a number's state: who (a user or the system and its cause), what, when."""

    class Action(models.TextChoices):
        MARK_INVALID = "mark_invalid", "Marked invalid"
        MARK_VALID = "mark_valid", "Marked valid"
        AUTO_INVALID = "auto_invalid", "Flagged invalid automatically"
        AUTO_VALID = "auto_valid", "Cleared by re-check"
        OPT_OUT = "opt_out", "Opted out"
        OPT_IN = "opt_in", "Opted in"
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        PAUSE_ENDED = "pause_ended", "Pause ended"
        RECHECK = "recheck", "Re-checked"
        PHONE_CHANGED = "phone_changed", "Phone number changed"
        LOOKUP_PACKAGES = "lookup_packages", "Lookup packages changed"
        REVIEW_DISMISSED = "review_dismissed", "Opt-out request dismissed"
        REVIEW_CONFIRMED = "review_confirmed", "Opt-out request confirmed (already opted out)"
        REVIEW_KEPT_OPTED_OUT = "review_kept", "Resubscribe request declined"
        REVIEW_UNDONE = "review_undone", "Review decision undone"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_events"
    )
    phone = models.CharField(max_length=20, blank=True)
    contact = models.ForeignKey(
        "contacts.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    # For system actions the cause, e.g. "Twilio 21614" or "deactivation list 2026-11-21".
    system_cause = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=24, choices=Action.choices)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    source_page = models.CharField(
        max_length=32, blank=True, help_text="Where the action came from, e.g. conversations."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="audit_org_time"),
            models.Index(fields=["organization", "phone"], name="audit_org_phone"),
            models.Index(fields=["organization", "actor", "-created_at"], name="audit_org_actor"),
        ]

    def __str__(self):
        return f"{self.get_action_display()} {self.phone}"

    @classmethod
    def phone_changed(cls, contact, *, old_raw, old_e164, by, note="", source_page=""):
        """The audit row of a contact taking a new number, unsaved (an import writes many at
        once). Its phone is E.164 only; the numbers as typed are in before/after."""
        return cls(
            organization_id=contact.organization_id,
            phone=contact.phone_e164 or old_e164,
            contact=contact,
            actor=by,
            action=cls.Action.PHONE_CHANGED,
            before={"phone_raw": old_raw, "phone_e164": old_e164},
            after={"phone_raw": contact.phone_raw, "phone_e164": contact.phone_e164},
            note=note,
            source_page=source_page,
        )

    @property
    def actor_label(self):
        if self.actor_id:
            return self.actor.get_full_name() or self.actor.get_username()
        return f"System ({self.system_cause})" if self.system_cause else "System"


class OrgAlert(models.Model):
    """Something staff must fix that is not about one number: a sender misconfigured, a breaker."""

    class Kind(models.TextChoices):
        SENDER_ERROR = "sender_error", "Sender configuration error"
        CIRCUIT_BREAKER = "circuit_breaker", "Broadcasts paused by the circuit breaker"
        EVENT_NOT_APPLIED = "event_not_applied", "A message from Twilio could not be applied"
        REVIEW_OVERDUE = "review_overdue", "Replies waiting for review"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    sender_ref = models.CharField(
        max_length=64, blank=True, help_text="The sender's number or messaging service SID."
    )
    error_code = models.CharField(max_length=16, blank=True)
    message = models.CharField(max_length=300)
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            # One open alert per org, kind, sender and code: repeats only count occurrences.
            models.UniqueConstraint(
                fields=["organization", "kind", "sender_ref", "error_code"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_alert",
            )
        ]

    def __str__(self):
        return self.message

    def resolve(self, *, by):
        """Staff mark the alert dealt with; resolving it again changes nothing."""
        if self.resolved_at is None:
            self.resolved_at = timezone.now()
            self.resolved_by = by
            self.save(update_fields=["resolved_at", "resolved_by"])
        return self


class ReviewItemQuerySet(models.QuerySet):
    def for_org(self, organization):
        return self.filter(organization=organization)

    def pending(self):
        return self.filter(decision=ReviewItem.Decision.PENDING)

    def pending_opt_outs(self):
        return self.pending().filter(kind=ReviewItem.Kind.OPT_OUT)


class ReviewItem(models.Model):
    """An inbound reply a person must read: a possible opt-out, or a possible resubscribe.

    A pending possible opt-out keeps broadcasts from the number (skip reason pending_review)
    and is due within 10 business days of receipt; undecided then, it becomes an opt-out.
    """

    class Kind(models.TextChoices):
        OPT_OUT = "opt_out", "Possible opt-out"
        RESUBSCRIBE = "resubscribe", "Possible resubscribe"

    class Decision(models.TextChoices):
        PENDING = "", "Waiting for review"
        OPT_OUT = "opt_out", "Opted out"
        NOT_OPT_OUT = "not_opt_out", "Not an opt-out"
        RESUBSCRIBE = "resubscribe", "Resubscribed"
        KEEP_OPTED_OUT = "keep_opted_out", "Kept opted out"
        DEADLINE = "deadline", "Opted out at the deadline"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="review_items"
    )
    phone = models.CharField(max_length=20, help_text="E.164")
    contact = models.ForeignKey(
        "contacts.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The inbound message (conversations.Message) by id: the deliverability app does not
    # depend on the conversations app; the text and time are copied here.
    inbound_message_id = models.BigIntegerField(null=True, blank=True, unique=True)
    body = models.TextField(blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    rule = models.CharField(max_length=32, help_text="The classifier rule that flagged it.")
    received_at = models.DateTimeField()
    due_at = models.DateTimeField(help_text="10 business days after receipt.")
    decision = models.CharField(
        max_length=16, choices=Decision.choices, blank=True, default=Decision.PENDING
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    # Whether the decision changed the number's state (an Undo then changes it back).
    changed_state = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ReviewItemQuerySet.as_manager()

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [
            # The pre-send checks look up pending possible opt-outs by number.
            models.Index(
                fields=["organization", "phone"],
                condition=Q(decision="", kind="opt_out"),
                name="review_pending_opt_out",
            ),
            models.Index(
                fields=["organization", "received_at"],
                condition=Q(decision=""),
                name="review_queue",
            ),
            models.Index(fields=["due_at"], condition=Q(decision=""), name="review_due"),
            models.Index(fields=["organization", "-decided_at"], name="review_decided"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} from {self.phone}"

    @property
    def is_pending(self):
        return self.decision == self.Decision.PENDING

    @property
    def rule_label(self):
        return RULE_LABELS.get(self.rule, self.rule)


class LookupPackages(models.Model):
    """Which Twilio Lookup packages an organization pays for (SPEC §2). Admin-edited, audited.

    Without a row an organization gets the defaults: line type on, line status and the
    reassigned-number check off.
    """

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="lookup_packages"
    )
    line_type = models.BooleanField(
        "line type", default=True, help_text="Landlines and other types that cannot take SMS."
    )
    line_status = models.BooleanField(
        "line status (beta)",
        default=False,
        help_text="Twilio beta: whether the carrier says the number is disconnected.",
    )
    reassigned = models.BooleanField(
        "reassigned number",
        default=False,
        help_text="US numbers only: whether the number changed owners since consent was given.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "lookup packages"
        verbose_name_plural = "lookup packages"

    def __str__(self):
        return f"Lookup packages of {self.organization}"

    def as_dict(self):
        return {name: getattr(self, name) for name in LOOKUP_PACKAGE_NAMES}

    @classmethod
    def for_org(cls, organization):
        """The org's packages, or the defaults (unsaved) when none were ever chosen."""
        return cls.objects.filter(organization=organization).first() or cls(
            organization=organization
        )


LOOKUP_PACKAGE_NAMES = ("line_type", "line_status", "reassigned")


class NumberLookup(models.Model):
    """One Lookup request made for an organization, with the packages it paid for.

    The cost of a lookup is the sum of the per-lookup prices (LOOKUP_PRICE_*) of the packages
    marked here; what it answered is also on the number's facts (line type, line status) or
    the number's state (a reassigned number's opt-out).
    """

    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="lookups"
    )
    phone = models.CharField(max_length=20, help_text="E.164")
    looked_up_at = models.DateTimeField(db_index=True)
    paid_line_type = models.BooleanField(default=False)
    paid_line_status = models.BooleanField(default=False)
    paid_reassigned = models.BooleanField(default=False)
    line_type = models.CharField(max_length=16, choices=LineType.choices, blank=True)
    line_status = models.CharField(max_length=12, choices=LineStatus.choices, blank=True)
    reassigned = models.CharField(max_length=20, choices=Reassigned.choices, blank=True)
    last_verified_date = models.DateField(
        null=True, blank=True, help_text="The consent date sent with the reassigned check."
    )
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-looked_up_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-looked_up_at"], name="lookup_org_time"),
            models.Index(fields=["organization", "phone"], name="lookup_org_phone"),
        ]

    def __str__(self):
        return f"Lookup of {self.phone}"

    @property
    def cost(self):
        """What Twilio charges for this lookup at the configured list prices (a Decimal)."""
        return lookup_cost(
            line_type=self.paid_line_type,
            line_status=self.paid_line_status,
            reassigned=self.paid_reassigned,
        )


def lookup_cost(*, line_type, line_status, reassigned):
    return (
        (settings.LOOKUP_PRICE_LINE_TYPE if line_type else Decimal(0))
        + (settings.LOOKUP_PRICE_LINE_STATUS if line_status else Decimal(0))
        + (settings.LOOKUP_PRICE_REASSIGNED if reassigned else Decimal(0))
    )


class DeactivationImport(models.Model):
    """One day's carrier deactivation list, imported once (running it again changes nothing)."""

    date = models.DateField(unique=True)
    numbers_listed = models.PositiveIntegerField(default=0)
    numbers_opted_out = models.PositiveIntegerField(default=0)
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date"]

    def __str__(self):
        return f"Deactivations {self.date}"
