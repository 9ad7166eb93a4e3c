from django.db import migrations


class Migration(migrations.Migration):
    """The Review queue lives in deliverability.ReviewItem now (0007 moved the pending ones)."""

    dependencies = [
        ("conversations", "0010_reclassify_inbound_replies"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="message",
            name="message_review_pending",
        ),
        migrations.RemoveField(
            model_name="message",
            name="review",
        ),
    ]
