"""`manage.py seed --contacts N --messages M`: synthetic data at scale, for benchmarks.

    uv run manage.py seed --contacts 200000 --messages 1000000 [--org SLUG] [--batch 5000]

Into one organization (default "Bench Club", slug `bench-club`, created with two senders when
missing) it writes N contacts, one conversation each, a realistic share of number states
(opted out with a reason and a date, Invalid by hand or automatically with the code and
reason, paused, on an error streak) and line-type facts, then M messages over the last 120
days: mostly delivered, some sent, undelivered and failed with codes of the error catalogue,
skipped with the reason that matches the number's state, and inbound replies. Each
conversation ends up showing its newest message.

Every run adds more: N more contacts (with numbers not used by earlier runs) and M more
messages, to this run's contacts (or, with `--contacts 0`, to the organization's existing
ones). A run is one transaction: interrupted, it adds nothing. The same `--seed` on the same
database gives the same data (dates are relative to the time of the run).

Rows are built in memory and written in batches, never one query per row: with PostgreSQL's
COPY on PostgreSQL (several times faster than INSERT for a million rows), with bulk_create
elsewhere.
"""

import json
import math
import random
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Left
from django.utils import timezone

from contacts.models import Contact, Organization
from conversations.models import Conversation, Message, Sender
from deliverability import catalogue
from deliverability.models import NumberFacts, NumberState

DAYS = 120  # the messages' history

# Real US area codes, 201 to 989: every one is a valid number with any exchange below.
AREA_CODES = (
    *(201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219),
    *(224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267),
    *(269, 270, 276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315),
    *(316, 317, 318, 319, 320, 321, 323, 325, 330, 331, 334, 336, 337, 339, 347, 351, 352),
    *(360, 361, 385, 386, 401, 402, 404, 405, 406, 407, 408, 409, 410, 412, 413, 414, 415),
    *(417, 419, 423, 424, 425, 430, 432, 434, 435, 440, 442, 443, 469, 470, 475, 478, 479),
    *(480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512, 513, 515, 516, 517, 518),
    *(520, 530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573, 574, 575, 580, 585),
    *(586, 601, 602, 603, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619),
    *(620, 623, 626, 630, 631, 636, 641, 646, 650, 651, 657, 660, 661, 662, 678, 682, 701),
    *(702, 703, 704, 706, 707, 708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727),
    *(731, 732, 734, 740, 747, 754, 757, 760, 763, 765, 770, 772, 773, 774, 775, 781, 785),
    *(786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814, 815, 816, 817, 818, 828),
    *(830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859, 860, 862, 863, 864, 865),
    *(870, 878, 901, 903, 904, 906, 907, 908, 909, 910, 912, 913, 914, 915, 916, 917, 918),
    *(919, 920, 925, 928, 929, 931, 936, 937, 940, 941, 947, 949, 951, 952, 954, 956, 959),
    *(970, 971, 972, 973, 978, 979, 980, 985, 989),
)
# Ordinary exchanges: not N11 (service codes) and not 555 (the simulator's plan, below).
EXCHANGES = tuple(e for e in range(200, 1000) if e % 100 != 11 and e != 555)
PHONE_SPACE = len(AREA_CODES) * len(EXCHANGES) * 10_000
# Multiplying by a stride coprime with the space walks every number exactly once, in an order
# that looks random: index n always gives the same number, and no two indexes share one.
PHONE_STRIDE = 2_654_435_761
assert math.gcd(PHONE_STRIDE, PHONE_SPACE) == 1
PHONE_OFFSET = 86_243_717

PLAN_SHARE = 0.03  # contacts on the simulator's +1 NPA 555 01NN plan (SPEC §9)

# Whitespace-separated words: a name list reads better as a paragraph than one name a line.
FIRST_NAMES = """
Aaliyah Aaron Abigail Adam Aditi Ahmed Aiden Aisha Alejandro Alex Alice Amara Amelia Ana Andre
Andrew Angela Anika Anthony Aria Arjun Ava Beatriz Benjamin Bianca Brandon Brianna Caleb Camila
Carlos Caroline Carter Catherine Chen Chloe Christopher Daniel David Deepa Diego Dmitri Dylan
Eleanor Elena Eli Elijah Elizabeth Ella Emily Emma Ethan Evelyn Fatima Felix Fiona Gabriel Grace
Hannah Harper Hassan Hector Henry Hiroshi Ian Imani Isaac Isabella Ivan Jack Jacob Jamal James
Jasmine Javier Jayden Jennifer Jessica John Jordan Jose Joseph Joshua Julia Julian Kai Kaitlyn
Kenji Kevin Kiara Laila Laura Layla Leah Leo Liam Lily Lucas Lucia Luis Luna Madison Malik Maria
Mariana Mark Mason Mateo Maya Mei Mia Michael Michelle Mohammed Naomi Natalia Nathan Nia Nicole
Noah Nora Olivia Omar Oscar Priya Rachel Rafael Rahul Rebecca Ricardo Riley Rosa Ryan Samantha
Samuel Santiago Sara Sebastian Sofia Sophia Stephanie Sung Tariq Thomas Tyler Valentina Victoria
William Wei Xavier Yara Yusuf Zara Zoe
""".split()  # noqa: SIM905
LAST_NAMES = """
Abbott Adams Ahmed Alvarez Anderson Bailey Baker Banerjee Barnes Bell Bennett Brooks Brown Bryant
Butler Campbell Carter Castillo Chang Chen Clark Cohen Collins Cook Cooper Cruz Davis Diaz Dubois
Edwards Evans Fernandez Fischer Flores Foster Garcia Gomez Gonzalez Gordon Gray Green Griffin
Gupta Hall Hamilton Harris Hayes Hernandez Hill Hoffman Howard Hughes Ito Jackson James Jenkins
Johnson Jones Kaur Kelly Khan Kim King Kowalski Kumar Lee Lewis Li Lin Lopez Martin Martinez
Mendoza Miller Mitchell Moore Morales Morgan Morris Murphy Nakamura Nguyen Novak O'Brien Okafor
Olsen Ortiz Park Parker Patel Perez Perry Peterson Phillips Powell Price Ramirez Reed Reyes
Richardson Rivera Roberts Robinson Rodriguez Rogers Romero Ross Russell Sanchez Sanders Santos
Schmidt Scott Shah Silva Singh Smith Stewart Sullivan Tanaka Taylor Thomas Thompson Torres Tran
Turner Walker Wang Ward Washington Watson White Williams Wilson Wong Wright Wu Yang Young Zhang
""".split()  # noqa: SIM905

OUTBOUND_BODIES = (
    "Hi {name}, your class starts at 6pm tomorrow. Reply STOP to opt out.",
    "Hi {name}, a reminder of your appointment on Monday at 10am. Reply C to confirm.",
    "The pool is closed this weekend for maintenance. Sorry for the trouble!",
    "Thanks for visiting today, {name}! How was your workout?",
    "{name}, your membership renews on the 1st. Questions? Call the front desk.",
    "New this month: sunrise yoga, Tue and Thu at 6:30am. Book in the app.",
    "Hi {name}, we missed you this week. Your trainer has a slot on Friday at 5pm.",
    "Your physio exercises for this week are ready at the front desk.",
    "Holiday hours: we close at 2pm on Friday. Have a good weekend!",
    "Hi {name}, please bring your insurance card to your next visit.",
)
INBOUND_BODIES = (
    "Thanks!",
    "See you then",
    "Can I move my appointment to Friday?",
    "Confirmed",
    "C",
    "Running 10 min late, sorry",
    "What time does the gym open on Sunday?",
    "Ok 👍",
    "Is the pool open today?",
    "Yes",
    "Who is this?",
    "Perfect, thank you",
)

# What the simulator does with +1 NPA 555 01NN, by NN // 5 (SPEC §9): line type, error code
# (None: delivered), the state the number ends up in.
PLAN = {
    **dict.fromkeys(range(0, 10), ("mobile", None, None)),
    **dict.fromkeys(range(10, 12), ("landline", 30006, "landline")),
    **dict.fromkeys(range(12, 14), ("mobile", 30005, "invalid_30005")),
    **dict.fromkeys(range(14, 16), ("mobile", 30003, None)),  # flaky: every other attempt
    16: ("mobile", 30007, None),
    17: ("nonFixedVoip", None, None),
    18: ("mobile", 21610, "carrier_stop"),
    19: ("mobile", None, "deactivated"),
}
CARRIERS = {
    "mobile": ("Verizon Wireless", "T-Mobile USA, Inc.", "AT&T Wireless", "US Cellular"),
    "landline": ("Lumen Technologies", "Frontier Communications", "Windstream"),
    "nonFixedVoip": ("Google (Grasshopper) - SVR", "Bandwidth.com - SVR"),
    "fixedVoip": ("Comcast Phone", "Charter Fiber Link"),
}
LINE_TYPES = (("mobile", 89), ("nonFixedVoip", 6), ("fixedVoip", 3), ("landline", 2))
OPT_OUT_REASONS = (("stop_keyword", 60), ("staff", 15), ("carrier_stop", 15), ("deactivated", 10))
AUTO_INVALID_CODES = (21614, 30005, 21211)

# Outcomes of an outbound message to a number without a state, per thousand:
# (status, error code, skip reason).
OUTCOMES = (
    (("delivered", None, ""), 875),
    (("sent", None, ""), 35),
    (("undelivered", 30003, ""), 22),
    (("undelivered", 30006, ""), 10),
    (("undelivered", 30007, ""), 10),
    (("undelivered", 30005, ""), 5),
    (("undelivered", 30008, ""), 5),
    (("undelivered", 30017, ""), 3),
    (("failed", 21614, ""), 10),
    (("failed", 21610, ""), 5),
    (("failed", 30034, ""), 4),
    (("failed", 21211, ""), 3),
    (("failed", 21612, ""), 3),
    (("skipped", None, "global_lifetime_error_count"), 6),
    (("skipped", None, "recent_errors"), 4),
)
INBOUND_SHARE = 0.08

# Columns of the message rows, in the order _message_row builds them.
MESSAGE_COLUMNS = (
    "organization_id",
    "conversation_id",
    "sender_id",
    "direction",
    "to_number",
    "from_number",
    "body",
    "status",
    "skip_reason",
    "error_code",
    "error_message",
    "segments",
    "encoding",
    "dispatch",
    "attempts",
    "blocked",
    "created_at",
    "sent_at",
    "status_changed_at",
    "final_at",
)


def phone_for(index):
    """The ordinary (non-555) US number of seeded contact number `index`, unique per index."""
    x = (index * PHONE_STRIDE + PHONE_OFFSET) % PHONE_SPACE
    x, area = divmod(x, len(AREA_CODES))
    line, exchange = divmod(x, len(EXCHANGES))
    return f"+1{AREA_CODES[area]}{EXCHANGES[exchange]}{line:04d}"


def as_entered(e164, pick):
    """The number as staff typed it: one of the usual US spellings."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return (
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}{exchange}{line}",
        f"+1 {area} {exchange} {line}",
        f"{area}.{exchange}.{line}",
        e164,
    )[pick]


def weighted_table(pairs):
    """A list holding each value as many times as its weight: one rng.choice() picks by weight."""
    return [value for value, weight in pairs for _ in range(weight)]


LINE_TYPES_TABLE = weighted_table(LINE_TYPES)
OPT_OUT_TABLE = weighted_table(OPT_OUT_REASONS)


class Command(BaseCommand):
    help = (
        "Add synthetic contacts, number states and messages to an organization, in bulk, for "
        "benchmarks. Every run adds more."
    )

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=1000, help="contacts to add")
        parser.add_argument("--messages", type=int, default=5000, help="messages to add")
        parser.add_argument("--org", default="bench-club", help="organization slug")
        parser.add_argument("--seed", type=int, default=1, help="random seed")
        parser.add_argument("--batch", type=int, default=5000, help="rows per insert")

    def handle(self, *args, **options):
        if options["contacts"] < 0 or options["messages"] < 0 or options["batch"] < 1:
            raise CommandError("--contacts and --messages must be ≥ 0, --batch ≥ 1")
        self.started = started = time.monotonic()
        self.random = random.Random(options["seed"])
        self.batch = options["batch"]
        self.now = timezone.now()
        self.writer = BulkWriter(self.batch)
        self.rows = 0
        with transaction.atomic():
            org = self._org(options["org"])
            senders = list(
                Sender.objects.filter(organization=org).values_list("id", "phone_number")
            )
            if options["contacts"]:
                targets = self._contacts(org, options["contacts"])
            else:
                targets = self._existing_targets(org) if options["messages"] else []
            if options["messages"]:
                if not targets:
                    raise CommandError(f"{org.slug} has no contacts to add messages to")
                self._messages(org, senders, targets, options["messages"])
                self._conversations_show_newest(org)
            # PostgreSQL checks the deferred foreign keys of every new row now: a while.
            self._say("  committing…")
        if connection.vendor == "postgresql":
            self._analyze()
        elapsed = time.monotonic() - started
        self._say(
            f"seeded {options['contacts']:,} contacts and {options['messages']:,} messages into "
            f"{org.slug}: {self.rows:,} rows in {elapsed:.1f} s "
            f"({self.rows / max(elapsed, 0.001):,.0f} rows/s)"
        )

    def _say(self, text):
        self.stdout.write(text)
        self.stdout.flush()

    def _progress(self, what, done, total):
        """A line about every tenth of the way (and at the end), not one per batch."""
        step = max(self.batch, total // 10)
        if done == total or done // step != (done - self.batch) // step:
            elapsed = time.monotonic() - self.started
            self._say(f"  {what}: {done:,}/{total:,} ({elapsed:.1f} s)")

    # The organization and its senders -------------------------------------------------------

    def _org(self, slug):
        name = "Bench Club" if slug == "bench-club" else slug.replace("-", " ").title()
        org, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        if not Sender.objects.filter(organization=org).exists():
            taken = set(Sender.objects.values_list("phone_number", flat=True))
            for kind, area, label in (
                (Sender.Kind.LONG_CODE, 617, "Front desk"),
                (Sender.Kind.TOLL_FREE, 888, "Reminders (toll-free)"),
            ):
                # 555-2xxx: outside the simulator's 555-01NN plan and the seeded contacts.
                number = next(
                    n for n in (f"+1{area}555{k:04d}" for k in range(2100, 10000)) if n not in taken
                )
                taken.add(number)
                Sender.objects.create(
                    organization=org,
                    phone_number=number,
                    kind=kind,
                    throughput=Sender.DEFAULT_THROUGHPUT[kind],
                    label=label,
                )
        return org

    # Contacts, conversations, number states and facts ---------------------------------------

    def _contacts(self, org, count):
        """Add `count` contacts with their conversations, states and facts.

        Returns the message targets: (contact id, conversation id, phone, first name, the time
        from which sends are skipped or None, the skip reason, the plan's error code).
        """
        rng = self.random
        # Continue the numbering of earlier runs, so that their numbers are not reused.
        start = Contact.objects.count()
        targets = []
        for offset in range(0, count, self.batch):
            size = min(self.batch, count - offset)
            contacts, profiles = [], []
            for n in range(size):
                index = start + offset + n
                if rng.random() < PLAN_SHARE:
                    plan = rng.randrange(100)
                    phone = f"+1{rng.choice(AREA_CODES)}55501{plan:02d}"
                else:
                    plan, phone = None, phone_for(index)
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                is_member = rng.random() < 0.8
                created = self.now - timedelta(seconds=rng.randint(DAYS * 86400, 3 * 365 * 86400))
                email = ""
                if rng.random() < 0.7:
                    email = f"{first}.{last}{index % 1000}@example.com".lower().replace("'", "")
                contacts.append(
                    (
                        org.id,
                        "member" if is_member else "lead",
                        first,
                        last,
                        email,
                        as_entered(phone, rng.randrange(6)),
                        phone,
                        "valid",
                        "sms" if rng.random() < 0.95 else "email",
                        f"M{index:07d}" if is_member else "",
                        created,
                        created,
                    )
                )
                profiles.append((phone, first, created, plan))
            contact_ids = self.writer.write(
                Contact,
                (
                    "organization_id",
                    "kind",
                    "first_name",
                    "last_name",
                    "email",
                    "phone_raw",
                    "phone_e164",
                    "phone_status",
                    "communication_preference",
                    "external_id",
                    "created_at",
                    "updated_at",
                ),
                contacts,
                returning_ids=True,
            )
            conversation_ids = self.writer.write(
                Conversation,
                ("organization_id", "contact_id", "last_message_at", "created_at"),
                [
                    (org.id, contact_id, created, created)
                    for contact_id, (_, _, created, _) in zip(contact_ids, profiles, strict=True)
                ],
                returning_ids=True,
            )
            self.rows += 2 * size
            states, facts = {}, {}
            for contact_id, conversation_id, (phone, first, _, plan) in zip(
                contact_ids, conversation_ids, profiles, strict=True
            ):
                block_at, skip_reason, code = self._number(phone, plan, states, facts)
                targets.append(
                    (contact_id, conversation_id, phone, first, block_at, skip_reason, code)
                )
            self._write_states(org, states, facts)
            self._progress("contacts", offset + size, count)
        return targets

    def _number(self, phone, plan, states, facts):
        """Choose the number's state and facts; returns (skipped from, skip reason, plan code)."""
        rng, now = self.random, self.now
        when = now - timedelta(seconds=rng.randint(86400, DAYS * 86400))
        line_type, code, fate = PLAN[plan // 5] if plan is not None else (None, None, None)
        if plan is None:
            roll = rng.random()
            if roll < 0.035:
                fate = rng.choice(OPT_OUT_TABLE)
            elif roll < 0.040:
                fate = "invalid_manual"
            elif roll < 0.045:
                fate = "invalid_auto"
            elif roll < 0.050:
                fate = "paused"
            elif roll < 0.055:
                fate = "streak"
            if rng.random() < 0.3:
                line_type = rng.choice(LINE_TYPES_TABLE)
                if line_type == "landline" and fate is None:
                    fate = "landline"
                elif line_type == "landline":
                    line_type = "mobile"
        if line_type:
            facts[phone] = {
                "line_type": line_type,
                "line_type_raw": line_type,
                "carrier_name": rng.choice(CARRIERS[line_type]),
                "looked_up_at": when - timedelta(days=rng.randint(0, 60)),
            }
        if fate is None:
            return None, "", code
        state = {}
        skip_reason = "marked_invalid"
        if fate in ("stop_keyword", "staff", "carrier_stop", "deactivated"):
            state = {"opt_out_reason": fate, "opted_out_at": when}
            skip_reason = "opted_out"
            if fate == "deactivated":
                facts.setdefault(phone, {})["deactivated_at"] = when.date()
        elif fate == "invalid_manual":
            state = {"invalid_source": "manual", "invalid_at": when}
        elif fate in ("invalid_auto", "invalid_30005"):
            flag = 30005 if fate == "invalid_30005" else rng.choice(AUTO_INVALID_CODES)
            state = {
                "invalid_source": "automatic",
                "invalid_code": str(flag),
                "invalid_reason": catalogue.describe(flag).reason,
                "invalid_at": when,
            }
        elif fate == "landline":
            state = {
                "invalid_source": "automatic",
                "invalid_code": catalogue.LOOKUP,
                "invalid_reason": "Landline; not SMS-capable",
                "invalid_at": when,
            }
        elif fate == "paused":
            when = now - timedelta(seconds=rng.randint(3600, 20 * 86400))
            state = {"paused_until": when + timedelta(days=rng.randint(21, 30))}
            skip_reason = "paused"
        elif fate == "streak":
            errors = [when - timedelta(days=4 - n, hours=rng.randint(0, 12)) for n in range(5)]
            state = {
                "error_streak": 5,
                "error_streak_times": [t.isoformat() for t in reversed(errors)],
                "streak_fifth_error_at": errors[0],
                "last_error_at": errors[-1],
                "last_attempt_at": errors[-1],
            }
            when = errors[-1]
            skip_reason = "recent_errors"
        states.setdefault(phone, state)
        return when, skip_reason, code

    def _write_states(self, org, states, facts):
        """Write the batch's states and facts, leaving numbers that already have them."""
        for model, rows, scope in (
            (NumberState, states, NumberState.objects.filter(organization=org)),
            (NumberFacts, facts, NumberFacts.objects.all()),
        ):
            if not rows:
                continue
            existing = set(scope.filter(phone__in=list(rows)).values_list("phone", flat=True))
            for phone in existing:
                del rows[phone]
            columns = sorted({column for values in rows.values() for column in values})
            defaults = [model._meta.get_field(c).get_default() for c in columns]
            owner = ("organization_id",) if model is NumberState else ()
            self.writer.write(
                model,
                ("phone", *owner, *columns),
                [
                    (
                        phone,
                        *((org.id,) if owner else ()),
                        *(values.get(c, d) for c, d in zip(columns, defaults, strict=True)),
                    )
                    for phone, values in rows.items()
                ],
            )
            self.rows += len(rows)

    def _existing_targets(self, org):
        """Message targets among the org's contacts that have a valid number (one query)."""
        rows = Conversation.objects.filter(
            organization=org, contact__phone_status=Contact.PhoneStatus.VALID
        ).values_list("contact_id", "id", "contact__phone_e164", "contact__first_name")
        return [(*row, None, "", None) for row in rows]

    # Messages --------------------------------------------------------------------------------

    def _messages(self, org, senders, targets, count):
        rng = self.random
        outcomes = weighted_table(OUTCOMES)
        reasons = {code: catalogue.describe(code).reason for code in catalogue.ERRORS}
        for offset in range(0, count, self.batch):
            size = min(self.batch, count - offset)
            rows = []
            for _ in range(size):
                # Some contacts hear from the club far more often than others.
                target = targets[int(len(targets) * rng.random() ** 1.6)]
                sender_id, sender_number = rng.choice(senders)
                at = self.now - timedelta(seconds=rng.randint(60, DAYS * 86400))
                rows.append(
                    self._message_row(org, target, sender_id, sender_number, at, outcomes, reasons)
                )
            self.writer.write(Message, MESSAGE_COLUMNS, rows)
            self.rows += size
            self._progress("messages", offset + size, count)

    def _message_row(self, org, target, sender_id, sender_number, at, outcomes, reasons):
        rng = self.random
        _, conversation_id, phone, first, block_at, skip_reason, plan_code = target
        blocked = block_at is not None and at >= block_at
        if rng.random() < INBOUND_SHARE:
            # Inbound from a number flagged Invalid is stored but blocked (SPEC §2).
            body = rng.choice(INBOUND_BODIES)
            blocked = blocked and skip_reason == "marked_invalid"
            return (
                *(org.id, conversation_id, sender_id, "inbound", sender_number, phone, body),
                *("received", "", None, "", 1, "", "", 0, blocked, at, None, at, at),
            )
        body = rng.choice(OUTBOUND_BODIES).format(name=first)
        if blocked:
            status, code, skip = "skipped", None, skip_reason
        elif plan_code is not None and (plan_code != 30003 or rng.random() < 0.5):
            status, code, skip = ("failed" if plan_code == 21610 else "undelivered"), plan_code, ""
        else:
            status, code, skip = rng.choice(outcomes)
        message = reasons[code] if code else ""
        if status in ("skipped", "failed"):
            # Never handed to the carrier: stopped by a check, or refused by the create call.
            sent_at, attempts, final_at = None, int(status == "failed"), at
        else:
            sent_at, attempts = at + timedelta(seconds=1), 1
            final_at = None if status == "sent" else at + timedelta(seconds=rng.randint(2, 90))
        return (
            *(org.id, conversation_id, sender_id, "outbound", phone, sender_number, body),
            *(status, skip, code, message, 1, "GSM-7", "done", attempts, False, at, sent_at),
            *(final_at or sent_at or at, final_at),
        )

    def _conversations_show_newest(self, org):
        """Each conversation's preview, time and direction come from its newest message."""
        if connection.vendor == "postgresql":
            # Fresh statistics, or the planner may scan the message table per conversation.
            self._analyze()
        newest = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at")
        Conversation.objects.filter(organization=org).update(
            last_message_at=Coalesce(
                Subquery(newest.values("created_at")[:1]), F("last_message_at")
            ),
            last_message_preview=Coalesce(
                Subquery(newest.values(preview=Left("body", 160))[:1]), Value("")
            ),
            last_message_direction=Coalesce(Subquery(newest.values("direction")[:1]), Value("")),
        )
        # A recent reply is still unread.
        Conversation.objects.filter(
            organization=org,
            last_message_direction=Message.Direction.INBOUND,
            last_message_at__gte=self.now - timedelta(days=3),
        ).update(unread_count=1)
        self._say(
            "  conversations: each shows its newest message "
            f"({time.monotonic() - self.started:.1f} s)"
        )

    def _analyze(self):
        tables = [m._meta.db_table for m in (Contact, Conversation, Message, NumberState)]
        tables.append(NumberFacts._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {', '.join(tables)}")


class BulkWriter:
    """Inserts many rows of one model, given as tuples of column values, without per-row queries.

    On PostgreSQL the rows go through COPY (ids, when asked for, are taken from the table's
    sequence first); elsewhere through bulk_create. Columns left out get the field's default.
    """

    def __init__(self, batch):
        self.batch = batch

    def write(self, model, columns, rows, returning_ids=False):
        if not rows:
            return []
        if connection.vendor == "postgresql":
            return self._copy(model, columns, rows, returning_ids)
        return self._bulk_create(model, columns, rows, returning_ids)

    def _copy(self, model, columns, rows, returning_ids):
        fields = {f.attname: f for f in model._meta.concrete_fields}
        missing = [f for name, f in fields.items() if name not in columns and not f.primary_key]
        now = timezone.now()
        extra = tuple(
            now
            if _stamped(f)
            # Defaults are constants here ("", 0, False, None) or lists and dicts, for JSON.
            else f.get_default()
            for f in missing
        )
        names = [fields[c].column for c in columns] + [f.column for f in missing]
        json_at = [i for i, f in enumerate([fields[c] for c in columns] + missing) if _is_json(f)]
        with connection.cursor() as cursor:
            ids = []
            if returning_ids:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [model._meta.db_table, len(rows)],
                )
                ids = [row[0] for row in cursor.fetchall()]
                names.insert(0, "id")
                json_at = [i + 1 for i in json_at]
            sql = f"COPY {model._meta.db_table} ({', '.join(names)}) FROM STDIN"
            with cursor.cursor.copy(sql) as copy:
                for n, row in enumerate(rows):
                    values = ((ids[n],) if returning_ids else ()) + tuple(row) + extra
                    if json_at:
                        values = list(values)
                        for i in json_at:
                            values[i] = json.dumps(values[i])
                    copy.write_row(values)
        return ids

    def _bulk_create(self, model, columns, rows, returning_ids):
        objects = [model(**dict(zip(columns, row, strict=True))) for row in rows]
        # Seeded history has its own dates: keep the dates given instead of stamping now.
        stamped = [f for f in model._meta.concrete_fields if f.attname in columns and _stamped(f)]
        saved = [(f, f.auto_now, f.auto_now_add) for f in stamped]
        try:
            for f in stamped:
                f.auto_now = f.auto_now_add = False
            created = model.objects.bulk_create(objects, batch_size=self.batch)
        finally:
            for f, auto_now, auto_now_add in saved:
                f.auto_now, f.auto_now_add = auto_now, auto_now_add
        return [o.pk for o in created] if returning_ids else []


def _stamped(field):
    """Whether Django sets the field to now on save (auto_now or auto_now_add)."""
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


def _is_json(field):
    return field.get_internal_type() == "JSONField"
