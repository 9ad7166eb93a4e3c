from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from contacts.models import Organization
from conversations import history


class Command(BaseCommand):
    help = (
        "Import an organization's message history from its Twilio account (the last N days, "
        "oldest first): STOP/START replies, carrier STOPs, errors and deliveries. Resumes an "
        "interrupted import; a second run changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization name or slug")
        parser.add_argument(
            "--days",
            type=int,
            default=history.DEFAULT_DAYS,
            help=f"how many days back, 1 to {history.MAX_DAYS} (default {history.DEFAULT_DAYS})",
        )

    def handle(self, *args, **options):
        org = Organization.objects.filter(
            Q(slug=options["org"]) | Q(name__iexact=options["org"])
        ).first()
        if org is None:
            raise CommandError(f"no organization named {options['org']!r}", returncode=2)
        try:
            record = history.history_import_start(
                org=org, days=options["days"], run_in_background=False
            )
        except history.HistoryRefused as refusal:
            raise CommandError(str(refusal), returncode=2) from None
        self.stdout.write(
            f"importing {record.first_day}–{record.last_day} for {org} (from {record.cursor_day})"
        )
        try:
            done = history.history_import_run(record.pk)
        except Exception as exc:
            raise CommandError(
                f"interrupted: {exc}; run the command again to resume", returncode=1
            ) from exc
        if done is None:
            raise CommandError("another worker is running this import now", returncode=1)
        self.stdout.write(f"read {done.messages_read} messages, applied {done.messages_applied}")
        for label, count in history.report_rows(done):
            self.stdout.write(f"  {label}: {count}")
        for item in done.ambiguous:
            self.stdout.write(
                f"  unclear reply from {item['phone']}: {item['body']!r} ({item['rule']})"
            )
