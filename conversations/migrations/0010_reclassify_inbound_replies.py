"""Every stored inbound reply read again with the FCC 2025 rules (deliverability.replies).

Oldest first, per organization and number: a reply now read as an opt-out opts the number out
(reason stop_keyword, audited as "re-classified") unless the number has since texted an opt-in
keyword; a possible opt-out (or a reply the old queue still held) becomes a Review item dated
from its receipt, so its 10-business-day deadline counts from when the member wrote it. No text
is sent. The classifier is the live one; everything else here is frozen with the migration.
"""

from datetime import timedelta
from zoneinfo import ZoneInfo

from django.db import migrations
from django.utils import timezone

REVIEW_BUSINESS_DAYS = 10


def _due(received_at, time_zone):
    try:
        tz = ZoneInfo(time_zone)
    except Exception:  # an unknown zone name must not stop the migration
        tz = ZoneInfo("UTC")
    local, remaining = timezone.localtime(received_at, tz), REVIEW_BUSINESS_DAYS
    while remaining:
        local += timedelta(days=1)
        if local.weekday() < 5:
            remaining -= 1
    return local


def _snapshot(state):
    return {
        "invalid_source": state.invalid_source,
        "invalid_code": state.invalid_code,
        "invalid_reason": state.invalid_reason,
        "opt_out_reason": state.opt_out_reason,
        "opted_out_at": state.opted_out_at.isoformat() if state.opted_out_at else None,
        "paused_until": state.paused_until.isoformat() if state.paused_until else None,
    }


def reclassify(apps, schema_editor):
    from deliverability.replies import Intent, ReviewKind, Rule, classify

    Message = apps.get_model("conversations", "Message")
    Organization = apps.get_model("contacts", "Organization")
    NumberState = apps.get_model("deliverability", "NumberState")
    AuditEvent = apps.get_model("deliverability", "AuditEvent")
    ReviewItem = apps.get_model("deliverability", "ReviewItem")

    zones = dict(Organization.objects.values_list("pk", "time_zone"))
    inbound = (
        Message.objects.filter(direction="inbound", from_number__startswith="+")
        .order_by("created_at", "id")
        .values_list(
            "pk",
            "organization_id",
            "from_number",
            "body",
            "created_at",
            "review",
            "conversation__contact_id",
        )
    )
    # First pass: when each number last texted an opt-in keyword (it came back after).
    last_opt_in = {}
    for _pk, org_id, phone, body, at, _review, _contact in inbound.iterator(chunk_size=2000):
        if classify(body).intent == Intent.OPT_IN:
            last_opt_in[(org_id, phone)] = at

    now = timezone.now()
    queued = set(ReviewItem.objects.values_list("inbound_message_id", flat=True))
    for pk, org_id, phone, body, at, review, contact_id in inbound.iterator(chunk_size=2000):
        if org_id not in zones or pk in queued:
            continue
        reply = classify(body)
        came_back = last_opt_in.get((org_id, phone), at) > at
        state = NumberState.objects.filter(organization_id=org_id, phone=phone).first()
        opted_out = bool(state and state.opt_out_reason)
        if reply.intent == Intent.OPT_OUT:
            if came_back or opted_out:
                continue
            if state is None:
                state = NumberState.objects.create(organization_id=org_id, phone=phone)
            before = _snapshot(state)
            state.opt_out_reason, state.opted_out_at, state.paused_until = "stop_keyword", now, None
            state.save(update_fields=["opt_out_reason", "opted_out_at", "paused_until"])
            AuditEvent.objects.create(
                organization_id=org_id,
                phone=phone,
                contact_id=contact_id,
                system_cause="re-classified",
                action="opt_out",
                before=before,
                after=_snapshot(state),
                note=f"Reply of {at:%Y-%m-%d}: “{body[:200]}” ({reply.rule})",
            )
            continue
        possible_opt_out = reply.intent == Intent.REVIEW and reply.review_kind == ReviewKind.OPT_OUT
        if review == "pending" and not possible_opt_out:
            # Held by the old queue and not an opt-out by the new rules: staff still decide.
            possible_opt_out, reply_rule = True, Rule.MENTIONS_STOP
        else:
            reply_rule = reply.rule
        resubscribe = (
            reply.intent == Intent.REVIEW
            and reply.review_kind == ReviewKind.RESUBSCRIBE
            and opted_out
            and state.opt_out_reason in ("stop_keyword", "staff")
            and state.opted_out_at is not None
            and at > state.opted_out_at
        )
        if review in ("confirmed", "dismissed") or came_back:
            continue  # staff decided it already, or the member came back since
        if (possible_opt_out and not opted_out) or resubscribe:
            ReviewItem.objects.create(
                organization_id=org_id,
                phone=phone,
                contact_id=contact_id,
                inbound_message_id=pk,
                body=body,
                kind="resubscribe" if resubscribe else "opt_out",
                rule=reply_rule,
                received_at=at,
                due_at=_due(at, zones[org_id]),
            )


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0009_message_auto_reply"),
        ("contacts", "0003_opt_out_confirmation_for_every_org"),
        ("deliverability", "0004_review_queue_and_wrong_number"),
    ]

    operations = [migrations.RunPython(reclassify, migrations.RunPython.noop, elidable=True)]
