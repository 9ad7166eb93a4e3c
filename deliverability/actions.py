"""Staff actions on a contact's number, shared by every page that offers them (SPEC §7).

`number_overview` says what the number's state is and which actions a member may take; the
views render it. `perform` runs one action through NumberState's audited transitions and returns
the text staff read. The rules themselves live on NumberState (deliverability/models.py).
"""

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from django.utils import timezone
from django.utils.formats import date_format

from deliverability import eligibility, lookup_packages, services
from deliverability.forms import PauseForm
from deliverability.models import (
    NOT_SMS_CAPABLE,
    InvalidSource,
    NumberFacts,
    NumberState,
    OptIn,
    OptOutReason,
    ReviewItem,
    SkipReason,
    StateChangeRefused,
)

# What each action is called in a menu, and what its optional note asks (lifting an opt-out
# needs one: see NumberState.opt_in).
LABELS = {
    "mark-invalid": "Mark Phone as Invalid",
    "mark-valid": "Mark Phone as Valid",
    "opt-out": "Opt out",
    "lift-opt-out": "Lift opt-out",
    "pause": "Pause messaging",
    "resume": "Resume messaging",
    "recheck": "Re-check number",
}
NOTE_PROMPTS = {
    "mark-invalid": "Why is the number invalid? (optional)",
    "opt-out": "Why opt out? (optional)",
    "lift-opt-out": "Why lift the opt-out? (required)",
    "pause": "Why pause? (optional)",
}
NOTE_EXAMPLES = {
    "mark-invalid": "e.g. wrong number, not in service",
    "opt-out": "e.g. asked at the front desk",
    "pause": "e.g. travelling until the 20th",
}

PAUSE_CHOICES = [(1, "1 day"), (3, "3 days"), (7, "1 week"), (14, "2 weeks"), (30, "30 days")]


@dataclass
class NumberOverview:
    contact: object
    state: object
    facts: object
    now: object
    is_manager: bool
    # Why a message to the number would be skipped now (the send path's own check), or None.
    skip_reason: object = None

    @property
    def phone(self):
        return self.contact.phone_e164

    @property
    def has_number(self):
        return bool(self.phone)

    @property
    def is_invalid(self):
        return self.state.is_invalid

    @property
    def is_automatic(self):
        return self.state.invalid_source == InvalidSource.AUTOMATIC

    @property
    def is_opted_out(self):
        return self.state.is_opted_out

    @property
    def is_paused(self):
        return self.state.is_paused(self.now)

    @property
    def pending_review(self):
        """A reply from the number waits in the Review queue as a possible opt-out."""
        if not self.has_number:
            return False
        return (
            ReviewItem.objects.pending_opt_outs()
            .filter(organization_id=self.state.organization_id, phone=self.phone)
            .exists()
        )

    @property
    def is_landline(self):
        return bool(self.facts and self.facts.line_type in NOT_SMS_CAPABLE)

    @property
    def bad_input(self):
        """The number as entered is not a usable destination (invalid_number)."""
        return not self.has_number and bool(self.contact.phone_raw)

    @property
    def can_message(self):
        return self.has_number and self.skip_reason is None

    @property
    def skip_label(self):
        return SkipReason(self.skip_reason).label if self.skip_reason else ""

    @cached_property
    def menu(self):
        return number_menu(
            self.state, has_number=self.has_number, now=self.now, is_manager=self.is_manager
        )

    # What the three-dot menu offers (number_menu decides).
    @property
    def may_mark_invalid(self):
        return "mark-invalid" in self.menu

    @property
    def may_mark_valid(self):
        return "mark-valid" in self.menu

    @property
    def may_opt_out(self):
        return "opt-out" in self.menu

    @property
    def may_lift_opt_out(self):
        return "lift-opt-out" in self.menu

    @property
    def may_pause(self):
        return "pause" in self.menu

    @property
    def may_resume(self):
        return "resume" in self.menu

    @property
    def may_recheck(self):
        return "recheck" in self.menu


def number_menu(state, *, has_number, now, is_manager):
    """The actions a number's three-dot menu offers, in menu order: the one rule every page's
    menu follows (the contact card, the Failed & Disabled log's rows). `state` is the number's
    NumberState (an unsaved one for a number without a row); `has_number` is False when the
    contact's number does not parse (nothing can be done to it but correct it)."""
    offered = []
    if has_number and not state.is_invalid:
        offered.append("mark-invalid")
    if state.is_invalid and state.invalid_source != InvalidSource.AUTOMATIC:
        offered.append("mark-valid")
    if has_number and not state.is_opted_out:
        offered.append("opt-out")
    if is_manager and state.opt_out_reason == OptOutReason.STAFF:
        offered.append("lift-opt-out")
    if has_number and not state.is_opted_out and not state.is_paused(now):
        offered.append("pause")
    if state.is_paused(now):
        offered.append("resume")
    if state.may_recheck:
        offered.append("recheck")
    return tuple(offered)


def number_overview(*, org, contact, is_manager, now=None):
    phone = contact.phone_e164
    state = NumberState.objects.of(org=org, phone=phone)
    facts = NumberFacts.objects.filter(phone=phone).first() if phone else None
    now = now or timezone.now()
    entered = phone or contact.phone_raw
    skip_reason = eligibility.check_number(org=org, phone=entered, now=now) if entered else None
    return NumberOverview(contact, state, facts, now, is_manager, skip_reason)


def card_context(request, contact, source_page):
    """What the contact card template needs, for the current member."""
    overview = number_overview(
        org=request.organization, contact=contact, is_manager=request.membership.is_manager
    )
    return {
        "overview": overview,
        "source_page": source_page,
        "pause_choices": PAUSE_CHOICES,
        "conversation": getattr(contact, "conversation", None),
    }


def needs_confirmation(action, data):
    """Opting a number out is asked twice: in the browser (hx-confirm) and, when that did not
    run (no JavaScript, or a bulk form), on a page of its own that posts again with
    `confirmed`."""
    return action == "opt-out" and data.get("confirmed") != "yes"


def confirm_context(request, *, who, cancel_url, number="", count=0):
    """The opt-out confirmation page (deliverability/confirm_opt_out.html): the same form
    again, `confirmed` added; `who` is opted out of `number` (or of `count` numbers)."""
    fields = [
        (name, value)
        for name, values in request.POST.lists()
        for value in values
        if name not in ("csrfmiddlewaretoken", "confirmed")
    ]
    return {
        "who": who,
        "number": number,
        "count": count,
        "is_manager": request.membership.is_manager,
        "action_url": request.path,
        "fields": fields,
        "cancel_url": cancel_url,
    }


def _pause_days(data):
    """The pause form's days, or its error as a refusal staff read."""
    form = PauseForm(data)
    if not form.is_valid():
        raise StateChangeRefused(form.errors["days"][0])
    return form.cleaned_data["days"]


def _when(value):
    return date_format(timezone.localtime(value), "M j, Y")


def perform(action, *, org, contact, user, data, source_page, phone=None):
    """Run `action` on the contact's number (or `phone`, the number a logged message went to);
    returns the success text or raises StateChangeRefused (its text is for staff).
    KeyError for an unknown action."""
    phone = phone or contact.phone_e164
    # PostgreSQL cannot store a NUL in text: it would fail the action, not just the note.
    note = (data.get("note") or "").replace("\x00", "").strip()[:1000]
    actor = {"by": user, "note": note, "source_page": source_page, "contact": contact}
    state = NumberState.objects.of(org=org, phone=phone)
    if action == "mark-invalid":
        state.mark_invalid(**actor)
        return "Success: the phone number is marked as invalid."
    if action == "mark-valid":
        state.mark_valid(**actor)
        return "Success: the phone number is marked as valid. Messaging can resume."
    if action == "opt-out":
        state.opt_out(reason=OptOutReason.STAFF, **actor)
        return "Success: the contact is opted out."
    if action == "lift-opt-out":
        state.opt_in(via=OptIn.STAFF, **actor)
        return "Success: the opt-out is lifted."
    if action == "pause":
        until = timezone.now() + timedelta(days=_pause_days(data))
        state.pause(until=until, **actor)
        return f"Success: messaging is paused until {_when(until)}."
    if action == "resume":
        state.resume(**actor)
        return "Success: messaging is resumed."
    if action == "recheck":
        lookup = lookup_packages.recheck_lookup(org, state)
        state, result = services.number_recheck(org=org, phone=phone, lookup=lookup, **actor)
        found = result.label.lower()
        if result.line_status:
            found += f", line {result.line_status_label.lower()}"
        if state.is_invalid:
            return f"Re-checked: the number is still {found}; the flag stays."
        return f"Success: the number is {found} now; the flag is cleared."
    raise KeyError(action)


ACTIONS = ("mark-invalid", "mark-valid", "opt-out", "lift-opt-out", "pause", "resume", "recheck")
MANAGER_ACTIONS = {"lift-opt-out"}


# What a row of the Failed & Disabled log (and its bulk form) may do to the message's number,
# when number_menu offers it.
BULK_ACTIONS = ("mark-invalid", "mark-valid", "opt-out", "pause")


def perform_bulk(action, *, org, targets, user, source_page, data=None):
    """Run `action` on many (contact, phone) pairs, one number once, with one form's `data`
    (the note, the pause's days); returns (done, skipped) where skipped maps each refusal text
    to how many numbers it stopped."""
    if action not in BULK_ACTIONS:
        raise KeyError(action)
    done, skipped, seen = 0, {}, set()
    for contact, phone in targets:
        if not phone or phone in seen:
            continue
        seen.add(phone)
        try:
            perform(
                action,
                org=org,
                contact=contact,
                user=user,
                data=data or {},
                source_page=source_page,
                phone=phone,
            )
            done += 1
        except StateChangeRefused as refusal:
            reason = _bulk_reason(str(refusal))
            skipped[reason] = skipped.get(reason, 0) + 1
    return done, skipped


def _bulk_reason(text):
    """Group refusals that differ only by the number's own reason."""
    if "flagged automatically" in text:
        return "flagged automatically; update the phone number in the profile instead"
    return text.rstrip(".").lower()
