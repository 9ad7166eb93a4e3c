"""`manage.py demo`: migrate, seed two organizations in every state, print the logins, serve.

Running it again changes nothing: every object is found by a natural key (org slug, user name,
contact member id, sender number, message SID) before it is created, and states are set through
the audited services only when the number does not have them yet.
"""

import hashlib
from datetime import time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from contacts.models import Contact, Membership, Organization
from conversations.models import Conversation, Message, MessageEvent, Sender
from deliverability import services
from deliverability.lookups import normalize
from deliverability.models import AuditEvent, NumberState, OptOutReason, OrgAlert

ORGS = [
    ("riverside-fitness", "Riverside Fitness", "America/New_York"),
    ("harbor-physio", "Harbor Physio", "America/Los_Angeles"),
]
# username, password, (org slug, role) ..., superuser
USERS = [
    ("demo", "demo", [("riverside-fitness", "manager")], False, "Dana", "Morgan"),
    ("frontdesk", "demo", [("riverside-fitness", "staff")], False, "Frankie", "Diaz"),
    ("other", "demo", [("harbor-physio", "manager")], False, "Oli", "Turner"),
    (
        "admin",
        "admin",
        [("riverside-fitness", "manager"), ("harbor-physio", "manager")],
        True,
        "Ada",
        "Admin",
    ),
]
# org slug, number, kind, throughput, label
SENDERS = [
    ("riverside-fitness", "+16175552001", "long_code", 1, "Front desk"),
    ("riverside-fitness", "+18885552002", "toll_free", 3, "Reminders (toll-free)"),
    ("harbor-physio", "+14155552003", "long_code", 1, "Clinic"),
]
# Riverside contacts: (member id, first, last, phone as entered, kind, what happens to them).
# Numbers follow the simulator's plan (SPEC §9): 555-0100..0149 deliver, 0150..59 landlines,
# 0160..69 unknown handsets, 0170..79 flaky, 0180..84 carrier filtering, 0185..89 VoIP,
# 0190..94 carrier STOP, 0195..99 deactivated.
RIVERSIDE = [
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
    ("R023", "Scarlett", "Lewis", "12345", "member", "bad_input"),
    ("R024", "Jack", "Lee", "555-01", "member", "bad_input"),
    ("R025", "Grace", "Walker", "917-555-0113", "lead", "skipped_history"),
    ("R026", "Samuel", "Hall", "212-555-0114", "lead", "canceled"),
    ("R027", "Chloe", "Allen", "646-555-0115", "member", "delivered"),
    ("R028", "David", "Young", "718-555-0116", "member", "read"),
    ("R029", "Zoe", "King", "917-555-0117", "lead", "delivered"),
    ("R030", "Owen", "Wright", "212-555-0118", "member", "sender_error"),
]
HARBOR = [
    ("H001", "Nora", "Scott", "(415) 555-0120", "member", "delivered"),
    ("H002", "Caleb", "Green", "415-555-0121", "member", "delivered"),
    ("H003", "Lily", "Baker", "510-555-0152", "member", "landline_lookup"),
    ("H004", "Isaac", "Adams", "510-555-0122", "member", "staff_opt_out"),
    ("H005", "Aria", "Nelson", "415-555-0123", "lead", "two_way"),
    # Amelia Taylor's number fails in Harbor too: errors across orgs (global rule).
    ("H006", "Amy", "Taylor", "212-555-0172", "member", "global_errors"),
]


def _sid(*parts):
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
            orgs = self._organizations()
            users = self._users(orgs)
            senders = self._senders(orgs)
            for slug, rows in (("riverside-fitness", RIVERSIDE), ("harbor-physio", HARBOR)):
                org = orgs[slug]
                for row in rows:
                    self._contact(org, senders[slug], users, row)
            self._alert(orgs["riverside-fitness"], senders["riverside-fitness"][0])
        self._print_logins(options["addrport"])
        if options["no_serve"]:
            return
        if not settings.REDIS_URL:
            from config import inprocess
            from config.celery import app

            inprocess.start_beat(app)
        call_command("runserver", options["addrport"], use_reloader=False)

    # Organizations, people, senders ---------------------------------------------------------

    def _organizations(self):
        orgs = {}
        for slug, name, tz in ORGS:
            orgs[slug], _ = Organization.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "time_zone": tz,
                    "quiet_hours_start": time(8, 0),
                    "quiet_hours_end": time(21, 0),
                    "reasonable_means_opt_out": True,
                    "help_reply": f"{name}: reply STOP to opt out. Questions? Call the front desk.",
                },
            )
        return orgs

    def _users(self, orgs):
        users = {}
        User = get_user_model()
        for username, password, memberships, superuser, first, last in USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User(username=username, first_name=first, last_name=last)
                user.is_staff = user.is_superuser = superuser
                user.set_password(password)
                user.save()
            for slug, role in memberships:
                Membership.objects.get_or_create(
                    user=user, organization=orgs[slug], defaults={"role": role}
                )
            users[username] = user
        return users

    def _senders(self, orgs):
        senders = {slug: [] for slug in orgs}
        for slug, number, kind, rate, label in SENDERS:
            sender, _ = Sender.objects.get_or_create(
                phone_number=number,
                defaults={
                    "organization": orgs[slug],
                    "kind": kind,
                    "throughput": rate,
                    "label": label,
                },
            )
            senders[slug].append(sender)
        return senders

    # Contacts, their history and state ------------------------------------------------------

    def _contact(self, org, senders, users, row):
        external_id, first, last, phone, kind, story = row
        contact = Contact.objects.filter(organization=org, external_id=external_id).first()
        if contact is None:
            contact = Contact(
                organization=org,
                external_id=external_id,
                first_name=first,
                last_name=last,
                kind=kind,
                email=f"{first}.{last}@example.com".lower().replace("'", ""),
            )
            contact.set_phone(phone)
            contact.save()
        conversation, _ = Conversation.objects.get_or_create(
            contact=contact, defaults={"organization": org}
        )
        self.org, self.contact, self.conversation = org, contact, conversation
        self.sender, self.users = senders[0], users
        getattr(self, f"_story_{story}")()
        latest = conversation.messages.order_by("-created_at").first()
        if latest:
            Conversation.objects.filter(pk=conversation.pk).update(
                last_message_at=latest.created_at,
                last_message_preview=latest.body[:160],
                last_message_direction=latest.direction,
            )

    def _message(self, key, body, status, days_ago, inbound=False, **fields):
        """One message of the history, found again by its SID on the next run."""
        sid = _sid(self.org.slug, self.contact.external_id, key)
        # A skipped message never reached Twilio and has no SID: found by its text instead.
        existing = (
            Message.objects.filter(conversation=self.conversation, body=body, status=status)
            if status == "skipped"
            else Message.objects.filter(provider_sid=sid)
        )
        message = existing.first()
        if message:
            return message
        phone = self.contact.phone_e164 or self.contact.phone_raw
        at = self.now - timedelta(days=days_ago)
        final = status in {"delivered", "undelivered", "failed", "canceled", "read", "received"}
        message = Message.objects.create(
            organization=self.org,
            conversation=self.conversation,
            sender=self.sender,
            direction="inbound" if inbound else "outbound",
            to_number=self.sender.phone_number if inbound else phone,
            from_number=phone if inbound else self.sender.phone_number,
            body=body,
            status=status,
            provider_sid=None if status == "skipped" else sid,
            dispatch="" if inbound else "done" if final or status == "skipped" else "submitted",
            sent_by=None if inbound else self.users["frontdesk"],
            **fields,
        )
        Message.objects.filter(pk=message.pk).update(
            created_at=at,
            sent_at=None if inbound or status == "skipped" else at,
            final_at=at + timedelta(seconds=20) if final else None,
            status_changed_at=at,
        )
        if status not in {"skipped", "received"}:
            MessageEvent.objects.get_or_create(
                idempotency_key=f"status:{sid}:{status}:{fields.get('error_code') or ''}",
                defaults={
                    "kind": "status",
                    "message": message,
                    "organization": self.org,
                    "provider_sid": sid,
                    "status": status,
                    "error_code": fields.get("error_code"),
                    "payload": {"MessageSid": sid, "MessageStatus": status},
                    "processed_at": at,
                    "outcome": f"now {status}",
                },
            )
        message.refresh_from_db()
        return message

    def _state(self):
        return NumberState.objects.filter(
            organization=self.org, phone=self.contact.phone_e164
        ).first() or NumberState(organization=self.org, phone=self.contact.phone_e164)

    def _reminder(self, status="delivered", days_ago=6, **fields):
        return self._message(
            "reminder",
            "Hi! Your class starts at 6pm tomorrow. Reply STOP to opt out.",
            status,
            days_ago,
            **fields,
        )

    def _failure(self, key, code, days_ago, status="undelivered"):
        """A failed send with its catalogue effect, applied once."""
        if Message.objects.filter(
            provider_sid=_sid(self.org.slug, self.contact.external_id, key)
        ).exists():
            return
        message = self._message(
            key, "Your membership renews next week.", status, days_ago, error_code=code
        )
        services.record_attempts(org=self.org, phones=[self.contact.phone_e164], at=message.sent_at)
        services.error_apply(
            org=self.org,
            phone=self.contact.phone_e164,
            code=code,
            at=message.sent_at,
            sender_ref=self.sender.phone_number,
        )

    def _story_delivered(self):
        self._reminder()
        self._message(
            "welcome", "Welcome to the club! Your first session is on us.", "delivered", 20
        )

    def _story_two_way(self):
        self._reminder()
        self._message("reply", "Thanks! Can I bring a friend?", "received", 5, inbound=True)
        self._message("answer", "Of course, see you both there.", "delivered", 5)

    def _story_in_flight(self):
        self._reminder()
        self._message("queued", "Towels are back in the locker rooms.", "queued", 0)
        self._message("sending", "The pool reopens on Monday.", "sending", 0)

    def _story_status_unavailable(self):
        self._message("stuck", "Don't forget your water bottle!", "sent", 1)

    def _story_read(self):
        self._reminder(status="read")

    def _story_manual_invalid(self):
        self._reminder()
        if not self._state().is_invalid:
            services.number_mark_invalid(
                org=self.org,
                phone=self.contact.phone_e164,
                by=self.users["frontdesk"],
                note="Wrong number, says the person who answered",
                source_page="conversations",
                contact=self.contact,
            )
        self._message(
            "after-invalid", "Your class starts soon.", "skipped", 1, skip_reason="marked_invalid"
        )

    def _story_landline_lookup(self):
        if not self._state().is_invalid:
            services.facts_record_lookup(
                phone=self.contact.phone_e164,
                result=normalize("landline", "Simulated Telephone Co."),
            )
        self._message(
            "skip-landline", "Your class starts soon.", "skipped", 2, skip_reason="marked_invalid"
        )

    def _story_landline_21614(self):
        self._failure("landline", 21614, 9, status="failed")

    def _story_unknown_30005(self):
        self._failure("unknown", 30005, 8)

    def _story_recent_errors(self):
        for n in range(5):
            self._failure(f"flaky-{n}", 30003, 30 - n * 5)

    def _story_global_errors(self):
        for n in range(3 if self.org.slug == "harbor-physio" else 4):
            self._failure(f"unreach-{n}", 30008, 25 - n * 5)

    def _story_content_30007(self):
        self._failure("spam", 30007, 3)

    def _story_voip(self):
        services.facts_record_lookup(
            phone=self.contact.phone_e164, result=normalize("nonFixedVoip", "Simulated VoIP")
        )
        self._reminder()

    def _story_carrier_stop(self):
        self._failure("carrier-stop", 21610, 12, status="failed")

    def _story_deactivated(self):
        self._reminder(days_ago=40)
        if not self._state().is_opted_out:
            day = (self.now - timedelta(days=3)).date()
            services.deactivation_apply(phones=[self.contact.phone_e164], list_date=day)

    def _story_stop_keyword(self):
        self._reminder(days_ago=10)
        self._message("stop", "STOP", "received", 9, inbound=True)
        if not self._state().is_opted_out:
            services.number_opt_out(
                org=self.org,
                phone=self.contact.phone_e164,
                reason=OptOutReason.STOP_KEYWORD,
                cause="inbound STOP",
                contact=self.contact,
            )
        self._message(
            "after-stop", "Holiday hours this week.", "skipped", 2, skip_reason="opted_out"
        )

    def _story_staff_opt_out(self):
        self._reminder(days_ago=15)
        if not self._state().is_opted_out:
            manager = self.users["demo" if self.org.slug == "riverside-fitness" else "other"]
            services.number_opt_out(
                org=self.org,
                phone=self.contact.phone_e164,
                reason=OptOutReason.STAFF,
                by=manager,
                note="Asked at the front desk",
                source_page="contact",
                contact=self.contact,
            )

    def _story_paused(self):
        self._reminder()
        if not self._state().paused_until:
            services.number_pause(
                org=self.org,
                phone=self.contact.phone_e164,
                until=self.now + timedelta(days=10),
                by=self.users["frontdesk"],
                note="Travelling until the end of the month",
                source_page="contact",
                contact=self.contact,
            )

    def _story_resubscribed(self):
        stop = self._message("stop", "stop", "received", 20, inbound=True)
        self._message("yes", "YES", "received", 4, inbound=True)
        self._reminder(days_ago=3)
        already = AuditEvent.objects.filter(
            organization=self.org, phone=self.contact.phone_e164, action=AuditEvent.Action.OPT_IN
        ).exists()
        if not already and stop:
            phone = self.contact.phone_e164
            common = {"org": self.org, "phone": phone, "contact": self.contact}
            services.number_opt_out(
                **common, reason=OptOutReason.STOP_KEYWORD, cause="inbound STOP"
            )
            services.number_opt_in(**common, via=services.OptIn.KEYWORD, cause="inbound YES")

    def _story_review(self):
        self._reminder()
        self._message(
            "review",
            "please stop texting me about classes",
            "received",
            1,
            inbound=True,
            review="pending",
        )

    def _story_blocked_inbound(self):
        self._reminder(days_ago=12)
        if not self._state().is_invalid:
            services.number_mark_invalid(
                org=self.org,
                phone=self.contact.phone_e164,
                by=self.users["frontdesk"],
                note="Number belongs to someone else",
                source_page="failed",
                contact=self.contact,
            )
        self._message("blocked", "Who is this?", "received", 1, inbound=True, blocked=True)

    def _story_bad_input(self):
        self._message("bad", "Your class starts soon.", "skipped", 2, skip_reason="invalid_number")

    def _story_skipped_history(self):
        self._message("paused-skip", "Your class starts soon.", "skipped", 4, skip_reason="paused")

    def _story_canceled(self):
        self._message("canceled", "Spring open day this Saturday!", "canceled", 2)

    def _story_sender_error(self):
        self._message(
            "sender-error",
            "Your class starts soon.",
            "failed",
            1,
            error_code=30034,
            error_message="Sending number is not registered (10DLC)",
        )

    def _alert(self, org, sender):
        if not OrgAlert.objects.filter(organization=org).exists():
            services.alert_raise(
                org=org,
                kind=OrgAlert.Kind.SENDER_ERROR,
                sender_ref=sender.phone_number,
                error_code="30034",
                message=f"Sending from {sender.phone_number} failed: Sending number is not "
                "registered (10DLC). Check the number's registration in Twilio.",
            )

    def _print_logins(self, addrport):
        self.stdout.write(
            self.style.SUCCESS("Demo ready.") + f"\n  Open http://{addrport}/ and log in as:\n"
            "    demo / demo        manager of Riverside Fitness\n"
            "    frontdesk / demo   staff of Riverside Fitness\n"
            "    other / demo       manager of Harbor Physio\n"
            "    admin / admin      superuser (Django admin at /admin/)\n"
        )
