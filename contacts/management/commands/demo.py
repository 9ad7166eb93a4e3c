"""`manage.py demo`: migrate, seed two organizations in every state, print the logins, serve.

Running it again changes nothing: every object is found by a natural key (org slug, user name,
contact member id, sender number, message SID) before it is created. A number's state is changed
only through NumberState's audited transitions (deliverability/models.py), so the audit trail
tells who did
what; each change is made either together with the new message that caused it (a failed send,
an inbound STOP) or only when the number does not have that state yet. Only history is written
directly: message rows and their callbacks, and timestamps moved back over the last weeks.
"""

import hashlib
import os
from datetime import time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from contacts.models import Contact, Membership, Organization
from conversations.models import Conversation, Message, MessageEvent, Sender
from deliverability import catalogue, consent, lookup_packages, outcomes, replies, services
from deliverability.lookups import LookupRequest, LookupResult, normalize
from deliverability.models import (
    AuditEvent,
    LookupPackages,
    NumberFacts,
    NumberState,
    OptIn,
    OrgAlert,
)

# slug, name, time zone, the manager and the staff member who act in the audit trail.
# Harbor Physio is seeded first: a number it looked up as a landline is later added to
# Riverside, where no lookup flagged it, which is what the `landline` skip reason is for.
DEMO_WINDOW = (time(0, 0), time(23, 59, 59))
SAMPLE_ALERT = (
    "Sample data from the demo: a message failed with 30034 (sender not registered for "
    "10DLC). In a real account, check the number's registration. Mark resolved to hide this."
)


def public_base_url(addrport):
    """The origin a browser and the simulator reach `runserver ADDRPORT` at."""
    host, _, port = addrport.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


ORGS = [
    ("harbor-physio", "Harbor Physio", "America/Los_Angeles", "other", "other"),
    ("riverside-fitness", "Riverside Fitness", "America/New_York", "demo", "frontdesk"),
]
# username, password, first name, last name, superuser
USERS = [
    ("demo", "demo", "Dana", "Morgan", False),
    ("frontdesk", "demo", "Frankie", "Diaz", False),
    ("other", "demo", "Oli", "Turner", False),
    ("admin", "admin", "Ada", "Admin", True),
]
# username, org slug, role. The admin manages both, so the org switcher shows.
MEMBERSHIPS = [
    ("demo", "riverside-fitness", "manager"),
    ("frontdesk", "riverside-fitness", "staff"),
    ("other", "harbor-physio", "manager"),
    ("admin", "riverside-fitness", "manager"),
    ("admin", "harbor-physio", "manager"),
]
# org slug, number, kind, throughput (msg/s), label. Outside the simulator's 555-01NN plan.
SENDERS = [
    ("riverside-fitness", "+16175552001", "long_code", 1, "Front desk"),
    ("riverside-fitness", "+18885552002", "toll_free", 3, "Reminders (toll-free)"),
    ("harbor-physio", "+14155552003", "long_code", 1, "Clinic"),
]
# (member id, first, last, phone as entered, kind, story: the _story_* method that seeds it).
# Numbers follow the simulator's plan (SPEC §9), so what the demo then sends behaves the same:
# 555-0100..49 deliver, 50..59 landlines, 60..69 unknown handsets (30005), 70..79 flaky
# (30003), 80..84 carrier filtering (30007), 85..89 VoIP, 90..94 carrier STOP (21610),
# 95..99 on the deactivation list.
CONTACTS = {
    "riverside-fitness": [
        ("R001", "Maya", "Patel", "(212) 555-0101", "member", "delivered"),
        ("R002", "Liam", "O'Connor", "212-555-0102", "member", "delivered"),
        ("R003", "Sofia", "Garcia", "+1 646 555 0103", "member", "two_way"),
        ("R004", "Noah", "Kim", "718.555.0104", "member", "in_flight"),
        ("R005", "Ava", "Johnson", "2125550105", "member", "status_unavailable"),
        ("R006", "Ethan", "Brown", "(917) 555-0106", "member", "manual_invalid"),
        ("R007", "Olivia", "Davis", "212-555-0150", "member", "landline_lookup"),
        ("R008", "Lucas", "Miller", "646-555-0151", "member", "landline_21614"),
        ("R009", "Mia", "Wilson", "718-555-0161", "member", "unknown_30005"),
        ("R010", "James", "Moore", "917-555-0171", "member", "recent_errors"),
        ("R011", "Amelia", "Taylor", "212-555-0172", "member", "global_errors"),
        ("R012", "Benjamin", "Anderson", "646-555-0181", "member", "content_30007"),
        ("R013", "Harper", "Thomas", "718-555-0186", "member", "voip"),
        ("R014", "Elijah", "Jackson", "917-555-0191", "member", "carrier_stop"),
        ("R015", "Evelyn", "White", "212-555-0196", "member", "deactivated"),
        ("R016", "Henry", "Harris", "646-555-0107", "member", "stop_keyword"),
        ("R017", "Abigail", "Martin", "718-555-0108", "member", "staff_opt_out"),
        ("R018", "Alexander", "Thompson", "917-555-0109", "member", "paused"),
        ("R019", "Emily", "Martinez", "212-555-0110", "member", "resubscribed"),
        ("R020", "Daniel", "Robinson", "646-555-0111", "member", "review"),
        ("R021", "Ella", "Clark", "718-555-0112", "member", "blocked_inbound"),
        ("R022", "Matthew", "Rodriguez", "n/a", "member", "bad_input"),
        ("R023", "Scarlett", "Lewis", "12345", "member", "bad_input"),  # a short code
        ("R024", "Jack", "Lee", "555-01", "member", "bad_input"),  # too short
        ("R025", "Grace", "Walker", "917-555-0113", "lead", "skipped_while_paused"),
        ("R026", "Samuel", "Hall", "212-555-0114", "lead", "canceled"),
        ("R027", "Chloe", "Allen", "646-555-0115", "member", "delivered"),
        ("R028", "David", "Young", "718-555-0116", "member", "read"),
        ("R029", "Zoe", "King", "917-555-0117", "lead", "delivered"),
        ("R030", "Owen", "Wright", "212-555-0118", "member", "sender_error"),
        # Also a Harbor Physio patient (H003): that lookup flagged the number there only.
        ("R031", "Lily", "Baker", "510-555-0152", "member", "known_landline"),
        # Riverside's Lookup packages include line status and the reassigned-number check.
        ("R032", "Nathan", "Hill", "917-555-0163", "member", "disconnected"),
        ("R033", "Layla", "Green", "212-555-0147", "member", "reassigned"),
    ],
    "harbor-physio": [
        ("H001", "Nora", "Scott", "(415) 555-0120", "member", "delivered"),
        ("H002", "Caleb", "Green", "415-555-0121", "member", "delivered"),
        ("H003", "Lily", "Baker", "510-555-0152", "member", "landline_lookup"),
        ("H004", "Isaac", "Adams", "510-555-0122", "member", "staff_opt_out"),
        ("H005", "Aria", "Nelson", "415-555-0123", "lead", "two_way"),
        # Amelia Taylor's number (R011) fails here too: errors across orgs (global rule).
        ("H006", "Amelia", "Taylor", "212-555-0172", "member", "global_errors"),
        ("H007", "Ruby", "Mitchell", "415-555-0124", "member", "paused"),
        ("H008", "Leo", "Carter", "510-555-0192", "member", "carrier_stop"),
        ("H009", "Hazel", "Perez", "none", "lead", "bad_input"),
        ("H010", "Jonah", "Roberts", "415-555-0125", "member", "stop_keyword"),
    ],
}
# The status callbacks Twilio sends on the way to each status (stored as MessageEvents).
CALLBACKS = {
    "delivered": ["sent", "delivered"],
    "undelivered": ["sent", "undelivered"],
    "read": ["sent", "delivered", "read"],
}
# Statuses after which no callback comes: `read` follows `delivered`.
SETTLED = {*Message.Status.FINAL, "read"}
REMINDER = "Hi! Your class starts at 6pm tomorrow. Reply STOP to opt out."


def _sid(*parts):
    """A Twilio-shaped SID (34 characters), the same on every run."""
    return "SMdemo" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:28]


class Command(BaseCommand):
    help = "Seed the demo organizations (idempotent), print the logins and serve on 127.0.0.1:8000."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="seed only")
        parser.add_argument("--addrport", default="127.0.0.1:8000")

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.now = timezone.now()
        with transaction.atomic():
            users = self._users()
            for slug, name, tz, manager, staff in ORGS:
                # The demo sends around the clock: a broadcast tried at night in the org's
                # time zone would otherwise only show "Held" until 8 AM there.
                org, _ = Organization.objects.get_or_create(
                    slug=slug,
                    defaults={
                        "name": name,
                        "time_zone": tz,
                        "quiet_hours_start": DEMO_WINDOW[0],
                        "quiet_hours_end": DEMO_WINDOW[1],
                    },
                )
                for username, org_slug, role in MEMBERSHIPS:
                    if org_slug == slug:
                        Membership.objects.get_or_create(
                            user=users[username], organization=org, defaults={"role": role}
                        )
                self.org, self.manager, self.staff = org, users[manager], users[staff]
                if slug == "riverside-fitness":
                    LookupPackages.objects.get_or_create(
                        organization=org, defaults={"line_status": True, "reassigned": True}
                    )
                self.senders = self._senders()
                for row in CONTACTS[slug]:
                    self._contact(*row)
                self._label_sample_alerts()
        self._print_logins(None if options["no_serve"] else options["addrport"])
        if options["no_serve"]:
            return
        # Callbacks from the simulator (and their signatures) go to where this server listens.
        if not os.environ.get("PUBLIC_BASE_URL"):
            settings.PUBLIC_BASE_URL = public_base_url(options["addrport"])
        if not settings.REDIS_URL:  # No broker: tasks and periodic tasks run in this process.
            from config import inprocess
            from config.celery import app

            inprocess.start_beat(app)
        call_command("runserver", options["addrport"], use_reloader=False)

    def _users(self):
        users = {}
        for username, password, first, last, superuser in USERS:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:  # A password changed since the first run is left alone.
                user = get_user_model()(username=username, first_name=first, last_name=last)
                user.is_staff = user.is_superuser = superuser
                user.set_password(password)
                user.save()
            users[username] = user
        return users

    def _senders(self):
        senders = []
        for slug, number, kind, rate, label in SENDERS:
            if slug == self.org.slug:
                defaults = {"organization": self.org, "kind": kind, "throughput": rate}
                sender, _ = Sender.objects.get_or_create(
                    phone_number=number, defaults=defaults | {"label": label}
                )
                senders.append(sender)
        return senders

    # One contact, its history and its state ----------------------------------------------------

    def _contact(self, external_id, first, last, phone, kind, story):
        org = self.org
        contact = Contact.objects.filter(organization=org, external_id=external_id).first()
        if contact is None:
            contact = Contact(
                organization=org,
                external_id=external_id,
                kind=kind,
                first_name=first,
                last_name=last,
                email=f"{first}.{last}@example.com".lower().replace("'", ""),
            )
            contact.set_phone(phone)  # Bad input is kept as entered and flagged invalid_number.
            contact.save()
            # Members joined over the last months, before any of their messages.
            joined = self.now - timedelta(days=45 + 2 * int(external_id[1:]))
            # They agreed to texts when they joined.
            Contact.objects.filter(pk=contact.pk).update(
                created_at=joined, consent_date=timezone.localdate(joined)
            )
            contact.refresh_from_db()
        conversation, created = Conversation.objects.get_or_create(
            contact=contact, defaults={"organization": org}
        )
        if created:
            Conversation.objects.filter(pk=conversation.pk).update(created_at=contact.created_at)
        self.contact, self.phone, self.conversation = contact, contact.phone_e164, conversation
        getattr(self, f"_story_{story}")()
        history = list(conversation.messages.order_by("-created_at", "-id"))
        if history:
            latest = history[0]
            unread = next((n for n, m in enumerate(history) if m.direction == "outbound"), 0)
            Conversation.objects.filter(pk=conversation.pk).update(
                last_message_at=latest.created_at,
                last_message_preview=latest.body[:160],
                last_message_direction=latest.direction,
                unread_count=unread,
            )

    def _message(self, key, body, status, days_ago, inbound=False, **fields):
        """One message of the history, with what it did to the number; None if seeded before."""
        sid = None if status == "skipped" else _sid(self.org.slug, self.contact.external_id, key)
        if sid:
            seeded = Message.objects.filter(provider_sid=sid)
        else:  # A skipped message never reached Twilio and has no SID: found by its text.
            seeded = self.conversation.messages.filter(body=body, status=status)
        if seeded.exists():
            return None
        at = self.now - timedelta(days=days_ago)
        phone, ours = self.phone or self.contact.phone_raw, self.senders[0].phone_number
        message = Message.objects.create(
            organization=self.org,
            conversation=self.conversation,
            sender=self.senders[0],
            direction="inbound" if inbound else "outbound",
            to_number=ours if inbound else phone,
            from_number=phone if inbound else ours,
            body=body,
            status=status,
            provider_sid=sid,
            dispatch="" if inbound else "done" if status in SETTLED | {"skipped"} else "submitted",
            sent_by=None if inbound else self.staff,
            **fields,
        )
        sent_at = None if inbound or sid is None else at
        Message.objects.filter(pk=message.pk).update(
            created_at=at,
            sent_at=sent_at,
            status_changed_at=at,
            final_at=at + timedelta(seconds=20) if status in SETTLED else None,
        )
        message.refresh_from_db()
        self._callbacks(message)
        if sent_at:  # What the send path and the callbacks would have recorded.
            outcomes.record_attempts(org=self.org, phones=[self.phone], at=sent_at)
        if status in {"delivered", "read"}:
            outcomes.record_success(org=self.org, phone=self.phone, at=at, delivered=True)
        elif inbound:
            outcomes.record_heartbeat(phone=self.phone, at=at)
        elif message.error_code:
            outcomes.error_apply(
                org=self.org, phone=self.phone, code=message.error_code, at=at, sender_ref=ours
            )
        self._backdate(days_ago)
        return message

    def _callbacks(self, message):
        """The status callbacks Twilio sent for this message, stored as the webhook stores them."""
        if message.provider_sid is None or message.direction == "inbound":
            return
        for n, status in enumerate(CALLBACKS.get(message.status, [message.status])):
            code = message.error_code if status == message.status else None
            params = {"MessageSid": message.provider_sid, "MessageStatus": status}
            params["ErrorCode"] = str(code or "")
            received = message.created_at + timedelta(seconds=5 * n)  # a few seconds apart
            event, created = MessageEvent.objects.get_or_create(
                # The webhook's key when Twilio sends no I-Twilio-Idempotency-Token.
                idempotency_key="status:{MessageSid}:{MessageStatus}:{ErrorCode}".format(**params),
                defaults={
                    "kind": MessageEvent.Kind.STATUS,
                    "message": message,
                    "organization": self.org,
                    "provider_sid": message.provider_sid,
                    "status": status,
                    "error_code": code,
                    "payload": params,
                    "processed_at": received + timedelta(seconds=1),
                    "outcome": f"now {status}",
                },
            )
            if created:
                MessageEvent.objects.filter(pk=event.pk).update(received_at=received)

    def _backdate(self, days_ago):
        """The services stamp what they change with the present; in the story it was then."""
        at = self.now - timedelta(days=days_ago)
        fresh = {"created_at__gte": self.now}
        AuditEvent.objects.filter(phone=self.phone, **fresh).update(created_at=at)
        states = NumberState.objects.filter(phone=self.phone)
        states.filter(invalid_at__gte=self.now).update(invalid_at=at)
        states.filter(opted_out_at__gte=self.now).update(opted_out_at=at)
        OrgAlert.objects.filter(organization=self.org, **fresh).update(
            created_at=at, last_seen_at=at
        )

    def _state(self):
        return NumberState.objects.of(org=self.org, phone=self.phone)

    def _reminder(self, status="delivered", days_ago=6):
        return self._message("reminder", REMINDER, status, days_ago)

    def _failure(self, key, code, days_ago, status="undelivered"):
        reason = catalogue.describe(code).reason
        body = "Your membership renews next week."
        self._message(key, body, status, days_ago, error_code=code, error_message=reason)

    def _lookup(self, line_type, carrier, days_ago):
        """A line-type lookup, made once; one that cannot take SMS flags the number."""
        if not NumberFacts.objects.filter(phone=self.phone, looked_up_at__isnull=False).exists():
            at = self.now - timedelta(days=days_ago)
            services.facts_record_lookup(
                phone=self.phone, result=normalize(line_type, carrier), now=at
            )
            self._backdate(days_ago)

    # Stories: each seeds one state of SPEC §2 or one status of SPEC §6 ------------------------

    def _story_delivered(self):
        self._message("welcome", "Welcome! Your first session is on us.", "delivered", 20)
        self._reminder()

    def _story_two_way(self):
        self._reminder()
        self._message("reply", "Thanks! Can I bring a friend?", "received", 5, inbound=True)
        self._message("answer", "Of course, see you both there.", "delivered", 5)

    def _story_in_flight(self):
        self._reminder()
        self._message("queued", "Towels are back in the locker rooms.", "queued", 0)
        self._message("sending", "The pool reopens on Monday.", "sending", 0)

    def _story_status_unavailable(self):
        # Sent a day ago and no final status since: staff see "Status Unavailable".
        self._message("stuck", "Don't forget your water bottle!", "sent", 1)

    def _story_read(self):
        self._reminder(status="read")

    def _story_manual_invalid(self):
        self._reminder(days_ago=8)
        if not self._state().is_invalid:
            note = "Wrong number, says the person who answered"
            page = "conversations"
            self._state().mark_invalid(
                by=self.staff, note=note, source_page=page, contact=self.contact
            )
            self._backdate(7)
        self._message("skip", "Your class starts soon.", "skipped", 1, skip_reason="marked_invalid")

    def _story_landline_lookup(self):
        self._lookup("landline", "Simulated Telephone Co.", days_ago=9)
        self._message("skip", "Your class starts soon.", "skipped", 2, skip_reason="marked_invalid")

    def _story_known_landline(self):
        self._message("skip", "Your class starts soon.", "skipped", 2, skip_reason="landline")

    def _story_landline_21614(self):
        self._failure("landline", 21614, 9, status="failed")

    def _story_disconnected(self):
        # Line status: the carrier says the number is disconnected (flag, Re-check offered).
        self._reminder(days_ago=40)
        if not self._state().is_invalid:
            request = LookupRequest(self.phone, line_type=True, line_status=True)
            answer = LookupResult(
                line_type="mobile",
                carrier_name="Simulated Wireless",
                line_status="inactive",
                request=request,
            )
            lookup_packages.apply(self.org, answer, now=self.now - timedelta(days=5))
            self._backdate(5)
        self._message("skip", "Your class starts soon.", "skipped", 2, skip_reason="marked_invalid")

    def _story_reassigned(self):
        # The reassigned-number check: the number changed owners since the member joined.
        self._reminder(days_ago=60)
        if not self._state().is_opted_out:
            request = LookupRequest(
                self.phone, line_type=False, last_verified=self.contact.consent_date
            )
            answer = LookupResult(line_type="", reassigned="yes", request=request)
            lookup_packages.apply(self.org, answer, now=self.now - timedelta(days=4))
            self._backdate(4)
        self._message("skip", "Holiday hours this week.", "skipped", 2, skip_reason="opted_out")

    def _story_unknown_30005(self):
        self._failure("unknown", 30005, 8)

    def _story_recent_errors(self):
        for n in range(5):  # Five in a row within 80 days: recent_errors.
            self._failure(f"flaky-{n}", 30003, 30 - n * 5)

    def _story_global_errors(self):
        # 3 at Harbor Physio and 4 at Riverside: 7 across orgs, but fewer than 5 in each.
        for n in range(3 if self.org.slug == "harbor-physio" else 4):
            self._failure(f"unreach-{n}", 30008, 25 - n * 5)

    def _story_content_30007(self):
        self._failure("spam", 30007, 3)

    def _story_voip(self):
        self._lookup("nonFixedVoip", "Simulated VoIP", days_ago=30)
        self._reminder()

    def _story_carrier_stop(self):
        self._failure("carrier-stop", 21610, 12, status="failed")

    def _story_deactivated(self):
        self._reminder(days_ago=40)
        if not self._state().is_opted_out:
            day = (self.now - timedelta(days=3)).date()
            services.deactivation_apply(phones=[self.phone], list_date=day)
            self._backdate(3)

    def _story_stop_keyword(self):
        self._reminder(days_ago=10)
        if self._message("stop", "STOP", "received", 9, inbound=True):
            self._state().opt_out(reason="stop_keyword", cause="inbound STOP", contact=self.contact)
            self._backdate(9)
        self._message("skip", "Holiday hours this week.", "skipped", 2, skip_reason="opted_out")

    def _story_staff_opt_out(self):
        self._reminder(days_ago=15)
        if not self._state().is_opted_out:
            note = "Asked at the front desk"
            self._state().opt_out(
                reason="staff",
                by=self.manager,
                note=note,
                source_page="contact",
                contact=self.contact,
            )
            self._backdate(14)

    def _story_paused(self):
        self._reminder(days_ago=3)
        if not self._state().paused_until:
            until, note = self.now + timedelta(days=10), "Travelling, back in ten days"
            self._state().pause(
                until=until, by=self.staff, note=note, source_page="contact", contact=self.contact
            )
            self._backdate(2)

    def _story_resubscribed(self):
        if self._message("stop", "stop", "received", 20, inbound=True):
            self._state().opt_out(reason="stop_keyword", cause="inbound STOP", contact=self.contact)
            self._backdate(20)
        if self._message("yes", "YES", "received", 4, inbound=True):
            self._state().opt_in(via=OptIn.KEYWORD, cause="inbound YES", contact=self.contact)
            self._backdate(4)
        self._reminder(days_ago=3)

    def _story_review(self):
        # Unclear wording: this waits in the Review queue for a person to decide.
        self._reminder()
        body = "please stop texting me about classes, just billing"
        message = self._message("review", body, "received", 1, inbound=True)
        if message:
            reply = replies.classify(body)
            consent.review_open(org=self.org, contact=self.contact, message=message, reply=reply)

    def _story_blocked_inbound(self):
        self._reminder(days_ago=12)
        if not self._state().is_invalid:
            note = "Number belongs to someone else"
            self._state().mark_invalid(
                by=self.staff, note=note, source_page="failed", contact=self.contact
            )
            self._backdate(11)
        # Inbound from a number flagged Invalid is stored, marked blocked, and not acted on.
        self._message("blocked", "Who is this?", "received", 1, inbound=True, blocked=True)

    def _story_bad_input(self):
        self._message("bad", "Your class starts soon.", "skipped", 2, skip_reason="invalid_number")

    def _story_skipped_while_paused(self):
        self._message("paused", "Your class starts soon.", "skipped", 4, skip_reason="paused")

    def _story_canceled(self):
        self._message("canceled", "Spring open day this Saturday!", "canceled", 2)

    def _story_sender_error(self):
        # 30034 is about our sender (unregistered 10DLC), not the number: it raises an org alert.
        self._failure("sender-error", 30034, 1, status="failed")

    def _label_sample_alerts(self):
        """The seeded sender error raises a real org alert; it says it is sample data, so that
        the banner on every page does not read as a broken install."""
        OrgAlert.objects.filter(organization=self.org, error_code="30034").exclude(
            message__startswith=SAMPLE_ALERT[:20]
        ).update(message=SAMPLE_ALERT)

    def _print_logins(self, addrport):
        where = f"Open {public_base_url(addrport)}/ and log in" if addrport else "Log in"
        self.stdout.write(
            self.style.SUCCESS("Demo ready.") + f"\n  {where} as:\n"
            "    demo / demo        manager of Riverside Fitness\n"
            "    frontdesk / demo   staff of Riverside Fitness\n"
            "    other / demo       manager of Harbor Physio\n"
            "    admin / admin      superuser (Django admin at /admin/), manager of both\n"
        )
