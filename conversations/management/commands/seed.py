"""`manage.py seed --contacts N --messages M`: synthetic data at scale, for benchmarks.

Rows are made in memory and written with bulk inserts in large batches: no per-row query. Every
run adds N more contacts and M more messages to the organization (default "Bench Club"); the
numbers are unique across runs. Deterministic for a given --seed and starting size.
"""

import random
import time
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts.models import Contact, Organization
from conversations.models import Conversation, Message, Sender
from deliverability import catalogue
from deliverability.models import NumberFacts, NumberState

AREA_CODES = [201, 212, 305, 312, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718, 720]
AREA_CODES += [801, 813, 816, 832, 858, 901, 914, 917, 919, 929, 949, 954, 971, 972, 978]
FIRST = [
    "Ava",
    "Ben",
    "Cara",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lea",
    "Max",
    "Nia",
    "Oto",
    "Pia",
    "Raj",
    "Sam",
    "Tia",
    "Uma",
    "Vic",
    "Wes",
]
LAST = [
    "Ng",
    "Lee",
    "Diaz",
    "Khan",
    "Roth",
    "Sato",
    "Funk",
    "Oduya",
    "Park",
    "Ruiz",
    "Mehta",
    "Cole",
    "Novak",
    "Berg",
    "Silva",
    "Kim",
    "Ahn",
]
BODIES = [
    "Your class starts at 6pm tomorrow. Reply STOP to opt out.",
    "Reminder: your appointment is on Monday at 10am.",
    "The pool is closed this weekend for maintenance.",
    "Thanks for visiting! How was your session?",
]
# (status, weight, error codes to pick from)
OUTCOMES = [
    ("delivered", 80, [None]),
    ("sent", 4, [None]),
    ("undelivered", 6, [30003, 30005, 30006, 30007, 30008]),
    ("failed", 3, [21614, 21610, 30034, 21211]),
    ("skipped", 4, [None]),
    ("received", 3, [None]),
]
SKIPS = ["opted_out", "marked_invalid", "invalid_number", "landline", "paused", "recent_errors"]
DAYS = 120


def phone_for(index):
    """A unique, valid US number for each index (never the fictional 555 exchange)."""
    area = AREA_CODES[index % len(AREA_CODES)]
    rest = index // len(AREA_CODES)
    exchange = 200 + (rest // 10000) % 799
    exchange = exchange + 1 if exchange == 555 else exchange
    return f"+1{area}{exchange:03d}{rest % 10000:04d}"


class Command(BaseCommand):
    help = "Add synthetic contacts and messages to an organization, in bulk (for benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=1000)
        parser.add_argument("--messages", type=int, default=5000)
        parser.add_argument("--org", default="bench-club", help="organization slug")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--batch", type=int, default=10000)

    def handle(self, *args, **options):
        started = time.monotonic()
        self.random = random.Random(options["seed"])
        self.batch = options["batch"]
        self.now = timezone.now()
        org = self._org(options["org"])
        senders = list(Sender.objects.filter(organization=org))
        contacts = self._contacts(org, options["contacts"])
        self._states(org, contacts)
        self._messages(org, senders, contacts, options["messages"])
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        elapsed = time.monotonic() - started
        rows = options["contacts"] * 2 + options["messages"]
        self.stdout.write(
            f"seeded {options['contacts']} contacts and {options['messages']} messages in "
            f"{elapsed:.1f} s ({rows / max(elapsed, 0.001):,.0f} rows/s) into {org.slug}"
        )

    def _say(self, text):
        self.stdout.write(text)
        self.stdout.flush()

    def _org(self, slug):
        org, created = Organization.objects.get_or_create(
            slug=slug, defaults={"name": slug.replace("-", " ").title()}
        )
        if not Sender.objects.filter(organization=org).exists():
            base = 2000 + org.pk * 10
            Sender.objects.create(
                organization=org,
                phone_number=f"+1617555{base:04d}",
                kind="long_code",
                throughput=1,
                label="Long code",
            )
            Sender.objects.create(
                organization=org,
                phone_number=f"+1888555{base + 1:04d}",
                kind="toll_free",
                throughput=3,
                label="Toll-free",
            )
        return org

    def _contacts(self, org, count):
        """Create `count` contacts and their conversations; returns [(id, phone, conv id)]."""
        start = Contact.objects.count()
        made = []
        for offset in range(0, count, self.batch):
            size = min(self.batch, count - offset)
            rows = []
            for n in range(size):
                phone = phone_for(start + offset + n)
                rows.append(
                    Contact(
                        organization=org,
                        first_name=self.random.choice(FIRST),
                        last_name=self.random.choice(LAST),
                        phone_raw=phone,
                        phone_e164=phone,
                        phone_status=Contact.PhoneStatus.VALID,
                        kind=Contact.Kind.MEMBER,
                    )
                )
            with transaction.atomic():
                created = Contact.objects.bulk_create(rows, batch_size=self.batch)
                conversations = Conversation.objects.bulk_create(
                    [
                        Conversation(
                            organization=org,
                            contact_id=c.pk,
                            last_message_at=self.now - timedelta(days=DAYS),
                        )
                        for c in created
                    ],
                    batch_size=self.batch,
                )
            made += [
                (c.pk, c.phone_e164, v.pk) for c, v in zip(created, conversations, strict=True)
            ]
            self._say(f"  contacts: {offset + size}/{count}")
        return made

    def _states(self, org, contacts):
        """A realistic share of numbers in each state of SPEC §2."""
        states, facts = [], []
        reasons = ["stop_keyword", "stop_keyword", "carrier_stop", "deactivated", "staff"]
        for _, phone, _ in contacts:
            roll = self.random.random()
            when = self.now - timedelta(days=self.random.randint(1, DAYS))
            if roll < 0.03:
                states.append(
                    NumberState(
                        organization=org,
                        phone=phone,
                        opt_out_reason=self.random.choice(reasons),
                        opted_out_at=when,
                    )
                )
            elif roll < 0.036:
                states.append(
                    NumberState(
                        organization=org, phone=phone, invalid_source="manual", invalid_at=when
                    )
                )
            elif roll < 0.04:
                states.append(
                    NumberState(
                        organization=org,
                        phone=phone,
                        invalid_source="automatic",
                        invalid_code="21614",
                        invalid_reason="Landline; not SMS-capable",
                        invalid_at=when,
                    )
                )
            elif roll < 0.045:
                states.append(
                    NumberState(
                        organization=org,
                        phone=phone,
                        paused_until=self.now + timedelta(days=self.random.randint(1, 30)),
                    )
                )
            elif roll < 0.05:
                times = [(when - timedelta(days=n)).isoformat() for n in range(5)]
                states.append(
                    NumberState(
                        organization=org,
                        phone=phone,
                        error_streak=5,
                        error_streak_times=times,
                        streak_fifth_error_at=when - timedelta(days=4),
                        last_error_at=when,
                        last_attempt_at=when,
                    )
                )
            if self.random.random() < 0.3:
                line_type = self.random.choices(
                    ["mobile", "landline", "nonFixedVoip", "fixedVoip"], [85, 5, 7, 3]
                )[0]
                facts.append(
                    NumberFacts(
                        phone=phone,
                        line_type=line_type,
                        carrier_name="Bench Wireless",
                        looked_up_at=when,
                    )
                )
        NumberState.objects.bulk_create(states, batch_size=self.batch, ignore_conflicts=True)
        NumberFacts.objects.bulk_create(facts, batch_size=self.batch, ignore_conflicts=True)
        self._say(f"  number states: {len(states)}, facts: {len(facts)}")

    def _messages(self, org, senders, contacts, count):
        # History has its own dates: created_at is set here, not stamped at insert.
        field = Message._meta.get_field("created_at")
        field.auto_now_add = False
        try:
            self._insert_messages(org, senders, contacts, count)
        finally:
            field.auto_now_add = True

    def _insert_messages(self, org, senders, contacts, count):
        statuses = [o[0] for o in OUTCOMES]
        weights = [o[1] for o in OUTCOMES]
        codes = {o[0]: o[2] for o in OUTCOMES}
        for offset in range(0, count, self.batch):
            size = min(self.batch, count - offset)
            rows = []
            for _ in range(size):
                contact_id, phone, conversation_id = self.random.choice(contacts)
                sender = self.random.choice(senders)
                status = self.random.choices(statuses, weights)[0]
                code = self.random.choice(codes[status])
                at = self.now - timedelta(seconds=self.random.randint(60, DAYS * 86400))
                inbound = status == "received"
                rows.append(
                    Message(
                        organization=org,
                        conversation_id=conversation_id,
                        sender=sender,
                        direction="inbound" if inbound else "outbound",
                        to_number=sender.phone_number if inbound else phone,
                        from_number=phone if inbound else sender.phone_number,
                        body=self.random.choice(BODIES),
                        status=status,
                        skip_reason=self.random.choice(SKIPS) if status == "skipped" else "",
                        error_code=code,
                        error_message=catalogue.describe(code).reason if code else "",
                        dispatch="" if inbound else "done",
                        created_at=at,
                        sent_at=None if inbound or status == "skipped" else at,
                        final_at=at if status not in ("sent",) else None,
                    )
                )
            Message.objects.bulk_create(rows, batch_size=self.batch)
            self._say(f"  messages: {offset + size}/{count}")

        latest = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at")
        Conversation.objects.filter(organization=org).update(
            last_message_at=Coalesce(
                Subquery(latest.values("created_at")[:1]), F("last_message_at")
            ),
            last_message_preview=Coalesce(Subquery(latest.values("body")[:1]), Value("")),
        )
        self._say("  conversations: latest activity updated")
