from celery import shared_task

from contacts.importer import run_import


@shared_task(acks_late=True)
def import_contacts(import_id):
    # Idempotent: a redelivered task resumes after the rows already recorded.
    run_import(import_id)
