"""Every contact gets a consent date. Existing contacts get the day they were added, marked
estimated: nobody recorded when they agreed to be texted."""

import django.utils.timezone
from django.db import migrations, models
from django.db.models.functions import TruncDate


def estimate_from_creation(apps, schema_editor):
    Contact = apps.get_model("contacts", "Contact")
    Contact.objects.update(consent_date=TruncDate("created_at"), consent_date_estimated=True)


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0006_clearer_labels_and_help_texts"),
    ]

    operations = [
        migrations.AddField(
            model_name="contact",
            name="consent_date",
            field=models.DateField(null=True),
        ),
        migrations.AddField(
            model_name="contact",
            name="consent_date_estimated",
            field=models.BooleanField(
                default=False,
                help_text="The consent date is a guess (the day the contact was added), not a record.",
            ),
        ),
        migrations.RunPython(estimate_from_creation, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="contact",
            name="consent_date",
            field=models.DateField(default=django.utils.timezone.localdate),
        ),
    ]
