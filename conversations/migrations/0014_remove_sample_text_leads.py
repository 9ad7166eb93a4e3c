"""Remove the "Sample Text" leads that Sample Texts used to create.

A Sample Text made a lead named "Sample Text" for a number that was not a contact; those leads
then received real broadcasts. A Sample Text no longer touches contacts (its message has no
conversation), so the leads go, and their test messages stay, detached, for the log.

A lead is left in place when anything else refers to it: a message other than a Sample Text
(a reply, a one-to-one text, a broadcast: a real conversation), an audit event, a Review queue
item or an import row. The migration prints how many it left, so staff can look at them.
"""

from django.db import migrations
from django.db.models import Exists, OuterRef, Q


def remove_sample_text_leads(apps, schema_editor):
    Contact = apps.get_model("contacts", "Contact")
    ContactImportRow = apps.get_model("contacts", "ContactImportRow")
    Message = apps.get_model("conversations", "Message")
    AuditEvent = apps.get_model("deliverability", "AuditEvent")
    ReviewItem = apps.get_model("deliverability", "ReviewItem")

    leads = Contact.objects.filter(
        kind="lead", first_name="Sample Text", last_name="", email="", external_id=""
    )
    referred = (
        Q(Exists(Message.objects.filter(conversation__contact=OuterRef("pk"), is_test=False)))
        | Q(Exists(AuditEvent.objects.filter(contact=OuterRef("pk"))))
        | Q(Exists(ReviewItem.objects.filter(contact=OuterRef("pk"))))
        | Q(Exists(ContactImportRow.objects.filter(contact=OuterRef("pk"))))
    )
    unused = list(leads.exclude(referred).values_list("pk", flat=True))
    kept = leads.filter(referred).count()
    for start in range(0, len(unused), 1000):
        chunk = unused[start : start + 1000]
        Message.objects.filter(conversation__contact__in=chunk).update(conversation=None)
        Contact.objects.filter(pk__in=chunk).delete()
    if kept:
        print(
            f'\n  {kept} "Sample Text" lead(s) kept: they have a real conversation or are '
            'referred to elsewhere. Review them on the Contacts page (search "Sample Text").'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0013_sample_text_without_contact"),
        ("contacts", "0004_import_duplicate_phone_choice"),
        ("deliverability", "0004_review_queue_and_wrong_number"),
    ]

    operations = [
        migrations.RunPython(remove_sample_text_leads, migrations.RunPython.noop, elidable=True)
    ]
