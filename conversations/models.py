"""Senders, conversations, messages, message events and broadcasts (SPEC §5–§6)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KT
from django.utils import timezone

from contacts.models import Contact, Organization
from deliverability.models import SkipReason


class Sender(models.Model):
    """One of the org's Twilio numbers or messaging services, with its throughput."""

    class Kind(models.TextChoices):
        LONG_CODE = "long_code", "Long code"
        TOLL_FREE = "toll_free", "Toll-free"
        SHORT_CODE = "short_code", "Short code"
        TEN_DLC = "10dlc", "10DLC"

    # Carrier limits per kind (SPEC §5); 10DLC is configured per campaign.
    DEFAULT_THROUGHPUT = {
        Kind.LONG_CODE: 1,
        Kind.TOLL_FREE: 3,
        Kind.SHORT_CODE: 100,
        Kind.TEN_DLC: 1,
    }

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="senders")
    label = models.CharField(max_length=100, blank=True)
    phone_number = models.CharField(
        max_length=20, blank=True, help_text="E.164, or blank for a messaging service."
    )
    messaging_service_sid = models.CharField(max_length=34, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.LONG_CODE)
    throughput = models.DecimalField(
        "throughput (msg/s)", max_digits=7, decimal_places=2, default=1
    )
    is_active = models.BooleanField(default=True)
    # Set by the circuit breaker (SPEC §5): broadcasts on this sender wait until then.
    broadcasts_paused_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(phone_number="") | ~Q(messaging_service_sid=""),
                name="sender_has_number_or_service",
            ),
            models.CheckConstraint(
                condition=Q(throughput__gt=0), name="sender_throughput_positive"
            ),
            # Inbound messages are routed by the To number: it belongs to one org only.
            models.UniqueConstraint(
                fields=["phone_number"], condition=~Q(phone_number=""), name="sender_number_unique"
            ),
        ]

    def __str__(self):
        return self.label or self.phone_number or self.messaging_service_sid

    @property
    def address(self):
        return self.phone_number or self.messaging_service_sid


class ConversationQuerySet(models.QuerySet):
    def for_org(self, organization):
        return self.filter(organization=organization)


class Conversation(models.Model):
    """The thread with one contact. It survives phone changes: history stays with the person."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="conversations"
    )
    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="conversation")
    last_message_at = models.DateTimeField(default=timezone.now)
    last_message_preview = models.CharField(max_length=160, blank=True)
    last_message_direction = models.CharField(max_length=8, blank=True)
    unread_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(
                fields=["organization", "-last_message_at", "-id"],
                name="conversation_org_latest",
            ),
        ]

    def __str__(self):
        return f"Conversation with {self.contact}"


class MessageStatus(models.TextChoices):
    """A message's status (SPEC §6); Message.Status."""

    # Ours: created, not yet handed to the provider; and not sent by the pre-send checks.
    PENDING = "pending", "Pending"
    SKIPPED = "skipped", "Skipped"
    # Twilio's (SPEC §6).
    ACCEPTED = "accepted", "Accepted"
    SCHEDULED = "scheduled", "Scheduled"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    PARTIALLY_DELIVERED = "partially_delivered", "Partially delivered"
    READ = "read", "Read"
    RECEIVING = "receiving", "Receiving"
    RECEIVED = "received", "Received"


# Status groups (SPEC §6), defined once: queries, index conditions, the status lifecycle,
# reports and broadcast progress all read these. Tuples keep the index conditions' SQL as it is.
MessageStatus.AT_PROVIDER = (  # handed to the provider, no final status yet
    MessageStatus.ACCEPTED,
    MessageStatus.SCHEDULED,
    MessageStatus.QUEUED,
    MessageStatus.SENDING,
    MessageStatus.SENT,
)
MessageStatus.IN_FLIGHT = (MessageStatus.PENDING, *MessageStatus.AT_PROVIDER)
MessageStatus.FINAL = (
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.FAILED,
    MessageStatus.CANCELED,
    MessageStatus.PARTIALLY_DELIVERED,
)
MessageStatus.DELIVERED_OR_READ = (MessageStatus.DELIVERED, MessageStatus.READ)
MessageStatus.FAILED_OR_UNDELIVERED = (MessageStatus.FAILED, MessageStatus.UNDELIVERED)
MessageStatus.FAILED_OR_SKIPPED = (*MessageStatus.FAILED_OR_UNDELIVERED, MessageStatus.SKIPPED)


class MessageQuerySet(models.QuerySet):
    def for_org(self, organization):
        return self.filter(organization=organization)

    def failed_or_skipped(self):
        return self.filter(status__in=Message.Status.FAILED_OR_SKIPPED)

    def without_final_status(self):
        return self.filter(
            direction=Message.Direction.OUTBOUND, status__in=Message.Status.IN_FLIGHT
        )


class Message(models.Model):
    """One SMS, outbound or inbound, with the status Twilio last told us (only ever forward)."""

    class Direction(models.TextChoices):
        OUTBOUND = "outbound", "Outbound"
        INBOUND = "inbound", "Inbound"

    Status = MessageStatus

    class Dispatch(models.TextChoices):
        """Where the send task stands with this message; guards against double sends."""

        HELD = "held", "Waiting for its broadcast's turn"
        WAITING = "waiting", "Waiting for a worker"
        CLAIMED = "claimed", "Claimed by a worker"
        SUBMITTED = "submitted", "Accepted by the provider"
        UNKNOWN = "unknown", "Outcome unknown; to reconcile"
        DONE = "done", "Nothing more to send"

    class AutoReply(models.TextChoices):
        """Automatic answers to a member's reply (SPEC §3, §5): only marked_invalid and a
        carrier STOP hold them back."""

        NONE = "", "None"
        HELP = "help", "HELP reply"
        OPT_OUT_CONFIRMATION = "opt_out_confirmation", "Opt-out confirmation"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="messages"
    )
    # None only for a Sample Text: a test that never creates or changes a contact (SPEC §5).
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    sender = models.ForeignKey(
        Sender, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    broadcast = models.ForeignKey(
        "Broadcast", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    # The raw value when a contact's number does not parse (the message is skipped): never lost.
    to_number = models.CharField(max_length=64)
    from_number = models.CharField(max_length=64, blank=True)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    provider_sid = models.CharField(max_length=34, null=True, blank=True, unique=True)
    segments = models.PositiveSmallIntegerField(default=1)
    encoding = models.CharField(max_length=8, blank=True, help_text="GSM-7 or UCS-2")
    is_test = models.BooleanField(
        default=False,
        help_text="A Sample Text: a test message sent from the Broadcasts page to one number "
        "to check a broadcast before sending it.",
    )
    auto_reply = models.CharField(
        max_length=20, choices=AutoReply.choices, blank=True, default=AutoReply.NONE
    )
    dispatch = models.CharField(max_length=10, choices=Dispatch.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    blocked = models.BooleanField(
        default=False, help_text="Inbound from a number flagged Invalid: stored, not acted on."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    final_at = models.DateTimeField(null=True, blank=True)
    carrier_done_at = models.DateTimeField(
        null=True, blank=True, help_text="RawDlrDoneDate: when the carrier reported it done."
    )
    # What Twilio charged, as a status fetch reported it (a cost, so positive; Twilio writes it
    # negative). Unset, the cost ledger estimates it from the segments and the list prices.
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    price_unit = models.CharField(max_length=3, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(conversation__isnull=False) | Q(is_test=True),
                name="message_without_conversation_is_a_test",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_thread"),
            # Reports aggregate an org's messages over a period.
            models.Index(fields=["organization", "created_at"], name="message_org_time"),
            # The Failed & Disabled log at 1M+ rows reads only these.
            models.Index(
                fields=["organization", "-created_at", "-id"],
                condition=Q(status__in=MessageStatus.FAILED_OR_SKIPPED),
                name="message_failed_log",
            ),
            # Reconciliation and "Status Unavailable" look only at messages still in flight.
            models.Index(
                fields=["status", "created_at"],
                condition=Q(direction="outbound", status__in=MessageStatus.IN_FLIGHT),
                name="message_in_flight",
            ),
            models.Index(fields=["broadcast", "status"], name="message_broadcast_status"),
            models.Index(fields=["to_number", "created_at"], name="message_to_time"),
        ]

    def __str__(self):
        return f"{self.get_direction_display()} {self.to_number} ({self.status})"


class MessageEvent(models.Model):
    """Every status callback and raw inbound message as it came, stored before processing."""

    class Kind(models.TextChoices):
        STATUS = "status", "Status callback"
        INBOUND = "inbound", "Inbound message"
        SEND_ERROR = "send_error", "Error from the send call"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=200)
    # Indexes are declared in Meta: every webhook inserts a row, and each index is work on
    # that path. The message and organization are set by processing, so their indexes hold
    # only the rows that have them; no pattern-matching twins of the text indexes.
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
    )
    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    provider_sid = models.CharField(max_length=34, blank=True)
    status = models.CharField(max_length=20, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True, help_text="What processing did.")
    # A transient failure (a deadlock, a lost connection) leaves the event unprocessed: it is
    # tried again at next_attempt_at. Defaults in the database too: the webhook inserts rows by
    # hand-written statements that name only the columns it fills.
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    not_applied = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Processed without effect: malformed, or about a message never found.",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="event_idempotency_key"),
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(processed_at__isnull=True),
                name="event_unprocessed",
            ),
            models.Index(fields=["provider_sid"], name="event_provider_sid"),
            models.Index(
                fields=["-received_at"], condition=Q(not_applied=True), name="event_not_applied"
            ),
            # Inbound messages from one number are applied in the order received: the pending
            # ones are looked up by sender.
            models.Index(
                KT("payload__From"),
                "received_at",
                condition=Q(kind="inbound", processed_at__isnull=True),
                name="event_inbound_pending",
            ),
            models.Index(
                fields=["message"], condition=Q(message__isnull=False), name="event_message"
            ),
            models.Index(
                fields=["organization"],
                condition=Q(organization__isnull=False),
                name="event_organization",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.provider_sid} {self.status}"

    @classmethod
    def learned(cls, message, *, kind, key, status, error_code, payload):
        """An event our own code learned of `message` (a send error, a status fetched from the
        provider), applied as it is stored; not saved yet (event_store.event_save_once)."""
        return cls(
            kind=kind,
            idempotency_key=key[:200],
            message=message,
            organization_id=message.organization_id,
            provider_sid=message.provider_sid or "",
            status=status,
            error_code=error_code,
            payload=payload,
            processed_at=timezone.now(),
        )


class Broadcast(models.Model):
    """One message to many contacts, paced on one sender inside quiet hours (SPEC §5)."""

    class Audience(models.TextChoices):
        ACTIVE = "active", "Active contacts"
        ALL = "all", "All contacts"
        FILTER = "filter", "Saved filter"
        UPLOAD = "upload", "Uploaded list"

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SENDING = "sending", "Sending"
        HELD = "held", "Held"
        CANCELED = "canceled", "Canceled"
        FINISHED = "finished", "Finished"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="broadcasts"
    )
    sender = models.ForeignKey(Sender, on_delete=models.PROTECT, related_name="broadcasts")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    audience = models.CharField(max_length=8, choices=Audience.choices, default=Audience.ACTIVE)
    audience_filter = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    hold_reason = models.CharField(max_length=200, blank=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    # Set by the circuit breaker when carriers filter this text (SPEC §5): it waits until then.
    body_paused_until = models.DateTimeField(null=True, blank=True)
    recipient_count = models.PositiveIntegerField(default=0)
    skipped_counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="broadcast_org_time")]

    def __str__(self):
        return self.name or f"Broadcast {self.pk}"


class HistoryImport(models.Model):
    """One import of the Twilio account's message history for an organization (SPEC §2–§4).

    The window is fixed when it starts; `cursor_day` is the first day not yet read, so an
    interrupted import goes on from there (messages already applied are remembered in
    HistorySeen and never applied twice). `report` holds the counts of what was applied and
    `ambiguous` the replies listed for staff, not acted on; `pending_flags` the automatic flags
    that wait for the end of the window (a later delivery disproves them).
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        INTERRUPTED = "interrupted", "Interrupted"
        FINISHED = "finished", "Finished"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="history_imports"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    days = models.PositiveSmallIntegerField()
    first_day = models.DateField()
    last_day = models.DateField()
    cursor_day = models.DateField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.RUNNING)
    # A worker holds the import until then; another run waits for the lease to lapse.
    lease_until = models.DateTimeField(null=True, blank=True)
    messages_read = models.PositiveIntegerField(default=0)
    messages_applied = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    ambiguous = models.JSONField(default=list, blank=True)
    pending_flags = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # One unfinished import per organization: a second start resumes it.
            models.UniqueConstraint(
                fields=["organization"],
                condition=~Q(state="finished"),
                name="one_open_history_import",
            ),
        ]

    def __str__(self):
        return f"History import of {self.organization} ({self.first_day}–{self.last_day})"

    @property
    def days_total(self):
        return (self.last_day - self.first_day).days + 1

    @property
    def days_done(self):
        return max(0, min(self.days_total, (self.cursor_day - self.first_day).days))

    @property
    def percent(self):
        return int(100 * self.days_done / self.days_total) if self.days_total else 100

    @property
    def is_waiting(self):
        """Started, and no worker has taken it yet."""
        return self.state == self.State.RUNNING and self.lease_until is None

    @property
    def is_stalled(self):
        """Running, but its worker stopped renewing its lease: it died mid-import."""
        return (
            self.state == self.State.RUNNING
            and self.lease_until is not None
            and self.lease_until < timezone.now()
        )


class HistorySeen(models.Model):
    """A Twilio message of the account's history already applied for an organization."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    sid = models.CharField(max_length=34)
    history_import = models.ForeignKey(
        HistoryImport, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "sid"], name="history_seen_once"),
        ]

    def __str__(self):
        return self.sid
