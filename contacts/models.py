import zoneinfo
from datetime import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from contacts.phones import parse_phone


def validate_time_zone(value):
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a time zone name such as America/New_York.")


class Organization(models.Model):
    """A club or clinic: the tenant. Everything staff see belongs to exactly one."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    default_region = models.CharField(
        max_length=2, default="US", help_text="Region used to read numbers entered without +."
    )
    time_zone = models.CharField(
        max_length=64,
        validators=[validate_time_zone],
        default="America/New_York",
        help_text="Staff see every date in this time zone; quiet hours are counted in it.",
    )
    any_inbound_resubscribes = models.BooleanField(
        default=False,
        help_text="Any inbound message lifts an opt-out the contact caused (not only START).",
    )
    opt_out_confirmation = models.TextField(
        default="You are unsubscribed and will receive no more texts from us. "
        "Reply START to resubscribe.",
        blank=True,
        help_text="Sent once when a member's own reply opts them out (no marketing). "
        "Leave empty to send none.",
    )
    help_reply = models.TextField(
        default="Reply STOP to unsubscribe. Msg & data rates may apply.",
        help_text="Sent in answer to HELP or INFO.",
    )
    quiet_hours_start = models.TimeField(
        default=time(8, 0),
        help_text="Start of the daily sending window for broadcasts, in the organization's "
        "time zone. Before it, broadcasts wait; one-to-one messages are not held.",
    )
    quiet_hours_end = models.TimeField(
        default=time(21, 0),
        help_text="End of the daily sending window: what a broadcast has not sent by then "
        "waits for the next day's window.",
    )
    circuit_breaker_errors = models.PositiveIntegerField(
        default=20,
        help_text="Sender errors among a sender's last 100 messages (content errors among one "
        "text's) that pause its broadcasts, when they are also at least 20% of them.",
    )
    circuit_breaker_minutes = models.PositiveIntegerField(
        default=10, help_text="How long the circuit breaker pauses."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if start is not None and end is not None and end <= start:
            # A window past midnight would send at night; 00:00 would never open at all.
            raise ValidationError(
                {
                    "quiet_hours_end": "Broadcasts must stop later the same day than they "
                    "start (for example 08:00 to 21:00); to send until midnight, use 23:59:59."
                }
            )

    @property
    def tzinfo(self):
        return zoneinfo.ZoneInfo(self.time_zone)


class Membership(models.Model):
    """A staff user's place in an organization, with a role (SPEC §8)."""

    class Role(models.TextChoices):
        STAFF = "staff", "Staff"
        MANAGER = "manager", "Manager"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org")
        ]

    def __str__(self):
        return f"{self.user} · {self.organization} ({self.get_role_display()})"

    @property
    def is_manager(self):
        return self.role == self.Role.MANAGER


class ContactQuerySet(models.QuerySet):
    def for_org(self, organization):
        return self.filter(organization=organization)

    def with_valid_phone(self):
        return self.filter(phone_status=Contact.PhoneStatus.VALID)

    def record_consent(self, day):
        """These contacts agreed to be texted on `day` (a START, a new number): a recorded
        date, no longer an estimate. An older date never replaces a newer one."""
        return self.filter(consent_date__lt=day).update(
            consent_date=day, consent_date_estimated=False
        ) + self.filter(consent_date=day, consent_date_estimated=True).update(
            consent_date_estimated=False
        )


class Contact(models.Model):
    """A member or lead. The phone is kept as entered and, when it parses, in E.164."""

    class PhoneStatus(models.TextChoices):
        # About the number as entered (does it parse?), not its state in the org: a number
        # staff flagged Invalid still parses, so it is "A phone number" here.
        VALID = "valid", "A phone number"
        INVALID_NUMBER = "invalid_number", "Not a phone number"
        MISSING = "missing", "No number"

    class Kind(models.TextChoices):
        MEMBER = "member", "Member"
        LEAD = "lead", "Lead"

    class Preference(models.TextChoices):
        SMS = "sms", "Text message"
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone call"
        NONE = "none", "No contact"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="contacts"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.MEMBER)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone_raw = models.CharField("phone as entered", max_length=64, blank=True)
    phone_e164 = models.CharField("phone (E.164)", max_length=20, blank=True, db_index=True)
    phone_status = models.CharField(
        "number as entered", max_length=16, choices=PhoneStatus.choices, default=PhoneStatus.MISSING
    )
    phone_error = models.CharField(
        max_length=200, blank=True, help_text="Why the number as entered is not usable."
    )
    communication_preference = models.CharField(
        max_length=8, choices=Preference.choices, default=Preference.SMS
    )
    external_id = models.CharField(
        max_length=64, blank=True, help_text="Member id in the club's own system (CSV import)."
    )
    # When this person agreed to be texted at this number (SPEC §2): imported, or the day the
    # contact was added, changed their number or texted START. It belongs to the person, never
    # to the number, and is what the reassigned-number lookup asks about (LastVerifiedDate).
    consent_date = models.DateField(default=timezone.localdate)
    consent_date_estimated = models.BooleanField(
        default=False,
        help_text="The consent date is a guess (the day the contact was added), not a record.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            models.Index(fields=["organization", "phone_e164"], name="contact_org_phone"),
            models.Index(
                "organization", Lower("last_name"), Lower("first_name"), name="contact_org_name"
            ),
            models.Index(fields=["organization", "external_id"], name="contact_org_external"),
        ]

    def __str__(self):
        return self.name or self.phone_display

    def get_absolute_url(self):
        return reverse("contacts:detail", args=[self.pk])

    @property
    def name(self):
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def phone_display(self):
        return self.phone_e164 or self.phone_raw or "(no number)"

    def set_phone(self, raw):
        """Store the number as entered and its parse; never loses the raw value."""
        parsed = parse_phone(raw, self.organization.default_region)
        self.phone_raw = parsed.raw
        self.phone_e164 = parsed.e164
        self.phone_status = parsed.status
        self.phone_error = parsed.error
        return parsed


class ContactImport(models.Model):
    """A CSV of members uploaded by a manager; every row gets a result (nothing is dropped)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class OnDuplicatePhone(models.TextChoices):
        """What a row does when its phone already belongs to another contact (one number, one
        member): the manager chooses per import."""

        SKIP = "skip", "Skip the row"
        UPDATE = "update", "Update that contact with the row"
        KEEP = "keep", "Keep both contacts"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=255)
    content = models.TextField(blank=True, help_text="The decoded file, kept until imported.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    # Line-type lookups of the imported numbers, which run after the rows (at LOOKUP_RATE).
    lookups_total = models.PositiveIntegerField(default=0)
    lookups_done = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    on_duplicate_phone = models.CharField(
        max_length=8, choices=OnDuplicatePhone.choices, default=OnDuplicatePhone.SKIP
    )
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Import {self.filename} ({self.get_state_display()})"

    @property
    def percent(self):
        return int(100 * self.processed_rows / self.total_rows) if self.total_rows else 100

    @property
    def lookups_pending(self):
        return self.lookups_done < self.lookups_total


class ContactImportRow(models.Model):
    class Outcome(models.TextChoices):
        IMPORTED = "imported", "Imported"
        UPDATED = "updated", "Updated"
        INVALID_NUMBER = "invalid_number", "Invalid number"
        DUPLICATE = "duplicate", "Duplicate"
        # The phone belongs to another contact (in the org, or of an earlier row); the reason
        # names it and says what was done, as the import's on_duplicate_phone chose.
        DUPLICATE_PHONE = "duplicate_phone", "Duplicate phone"
        ERROR = "error", "Error"

    contact_import = models.ForeignKey(ContactImport, on_delete=models.CASCADE, related_name="rows")
    line = models.PositiveIntegerField(help_text="Line in the file (the header is line 1).")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=300, blank=True)
    phone_raw = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=201, blank=True)
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["contact_import", "line"]
        constraints = [
            models.UniqueConstraint(fields=["contact_import", "line"], name="one_result_per_line")
        ]

    def __str__(self):
        return f"line {self.line}: {self.outcome}"
