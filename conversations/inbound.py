"""Applying one stored inbound message (SPEC §3, §6): the contact, the conversation, the
message, and what its words mean (STOP, START, HELP and the possible opt-outs for review).
"""

import logging

from django.db.models import F, Q
from django.utils import timezone

from contacts.models import Contact
from contacts.phones import mask, parse_phone
from conversations.models import Conversation, Message, MessageEvent, Sender
from conversations.segments import segment
from conversations.sending import conversation_for, message_create_outbound, touch_conversation
from deliverability import consent, outcomes, replies
from deliverability.models import NumberState

log = logging.getLogger(__name__)


NOT_OUR_NUMBER = "unknown recipient number"


def inbound_apply(event):
    """Apply one stored inbound message (inside the caller's transaction); returns the outcome.

    Locks follow conversations.events' order: the number's state, then its facts, before the
    contact, conversation and message are written.
    """
    params = event.payload
    to, sender_number = params.get("To") or "", params.get("From") or ""
    senders = Sender.objects.select_related("organization")
    sender = senders.filter(phone_number=to).first()
    if sender is None and params.get("MessagingServiceSid"):
        # A number of a messaging service's pool: the service is the org's sender.
        sender = senders.filter(messaging_service_sid=params["MessagingServiceSid"]).first()
    if sender is None:
        log.info("inbound message to %s, which is none of our senders", mask(to))
        return NOT_OUR_NUMBER
    org = sender.organization
    event.organization_id = org.pk
    phone = parse_phone(sender_number, org.default_region).e164 or sender_number
    if phone.startswith("+"):
        NumberState.objects.with_facts(org=org, phone=phone)
    same_number = Q(phone_e164=phone) if phone.startswith("+") else Q(phone_raw=sender_number)
    contact = Contact.objects.filter(same_number, organization=org).order_by("id").first()
    if contact is None:
        contact = Contact(organization=org, kind=Contact.Kind.LEAD)
        contact.set_phone(sender_number)
        contact.save()
    state = NumberState.objects.of(org=org, phone=phone)
    body = params.get("Body") or ""
    conversation = conversation_for(contact)
    message = Message.objects.create(
        organization=org,
        conversation=conversation,
        sender=sender,
        direction=Message.Direction.INBOUND,
        to_number=to,
        from_number=phone,
        body=body,
        status=Message.Status.RECEIVED,
        provider_sid=(params.get("MessageSid") or params.get("SmsSid") or None),
        segments=_segments(params.get("NumSegments"), body),
        blocked=state.is_invalid,
        final_at=timezone.now(),
    )
    event.message = message
    if _later_reply_applied(event, conversation):
        # Applied out of the order received (retried from the admin after a later reply, or the
        # number written another way): it takes its place in the thread, and the later reply
        # has the last word (a late STOP never undoes a START).
        Message.objects.filter(pk=message.pk).update(created_at=event.received_at)
        Conversation.objects.filter(pk=conversation.pk).update(unread_count=F("unread_count") + 1)
        return "stored (a later reply from the number was already applied)"
    touch_conversation(conversation, message, unread=True)
    if not phone.startswith("+"):
        # Not a phone number (an alphanumeric sender, a short code): stored, and nothing to
        # record against a number.
        return "stored (the sender is not a phone number)"
    if state.is_invalid:
        # Blocked: no conversation continues with an Invalid number. An opt-out is still
        # honoured (and a possible one queued for review), so that clearing the flag later
        # never texts someone who asked to stop. Nothing is sent back.
        reply = replies.from_opt_out_type(params.get("OptOutType")) or replies.classify(body)
        if (
            reply.intent == replies.Intent.OPT_OUT
            or reply.review_kind == replies.ReviewKind.OPT_OUT
        ):
            result = consent.reply_apply(org=org, contact=contact, message=message, reply=reply)
            return f"stored as blocked; {result.outcome}"
        return "stored as blocked (number marked invalid)"
    outcomes.record_heartbeat(phone=phone, at=message.created_at)
    return _act_on_keywords(org, contact, sender, message, params.get("OptOutType"))


def _later_reply_applied(event, conversation):
    """Whether a reply in `conversation` received after `event` has been applied already.

    By the times the replies were received, not applied: under a backlog an earlier reply is
    applied after a later one was received, and a reply postponed by a transient error is
    still applied in its turn (conversations.events holds later replies back until then).
    """
    return (
        MessageEvent.objects.filter(
            kind=MessageEvent.Kind.INBOUND,
            message__conversation=conversation,
            received_at__gt=event.received_at,
        )
        .exclude(pk=event.pk)
        .exists()
    )


def _segments(value, body):
    """Twilio's NumSegments when it is plausible, else counted from the body."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if 1 <= count <= 100:
        return count
    return max(segment(body).segments, 1)


def _act_on_keywords(org, contact, sender, message, opt_out_type):
    """SPEC §3. With Advanced Opt-Out, Twilio already acted and replied: record, don't reply."""
    reply = replies.from_opt_out_type(opt_out_type)
    twilio_replied = reply is not None
    reply = reply or replies.classify(message.body)
    result = consent.reply_apply(org=org, contact=contact, message=message, reply=reply)
    if twilio_replied:
        return result.outcome
    if result.confirm_opt_out:
        body, kind = org.opt_out_confirmation, Message.AutoReply.OPT_OUT_CONFIRMATION
    elif reply.intent == replies.Intent.HELP:
        body, kind = org.help_reply, Message.AutoReply.HELP
    else:
        return result.outcome
    if body.strip():
        message_create_outbound(org=org, contact=contact, body=body, sender=sender, auto_reply=kind)
    return result.outcome
