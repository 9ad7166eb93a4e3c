"""Stored events that processing gave up on after a transient database error (a deadlock, a
lost connection) were never applied: they go back into the queue, to be applied once."""

from django.db import migrations
from django.db.models import Q

TRANSIENT = Q(outcome__startswith="error: OperationalError") | Q(
    outcome__startswith="error: InterfaceError"
)


def requeue(apps, schema_editor):
    MessageEvent = apps.get_model("conversations", "MessageEvent")
    MessageEvent.objects.filter(TRANSIENT, processed_at__isnull=False).update(
        # One attempt made: applied late, an inbound message never undoes a later reply.
        processed_at=None,
        outcome="",
        attempts=1,
        next_attempt_at=None,
        not_applied=False,
    )


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_event_retries")]

    operations = [migrations.RunPython(requeue, migrations.RunPython.noop)]
