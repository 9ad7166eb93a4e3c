import json

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from contacts.models import Organization
from contacts.phones import parse_phone
from conversations import broadcasts
from conversations.models import Broadcast, Sender


class Command(BaseCommand):
    help = (
        "Send a broadcast from the command line (scheduled reminders): prints the sendable and "
        "skipped counts, then sends unless --dry-run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization name or slug")
        parser.add_argument("--to", required=True, choices=["active", "all"])
        parser.add_argument("--body", required=True)
        parser.add_argument("--sender", help="the sending number (default: the org's first)")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--json", action="store_true", help="print the counts as JSON")

    def handle(self, *args, **options):
        org = Organization.objects.filter(
            Q(slug=options["org"]) | Q(name__iexact=options["org"])
        ).first()
        if org is None:
            raise CommandError(f"no organization named {options['org']!r}", returncode=2)
        senders = Sender.objects.filter(organization=org, is_active=True).order_by("id")
        if options["sender"]:
            number = parse_phone(options["sender"], org.default_region).e164 or options["sender"]
            sender = senders.filter(
                Q(phone_number=number) | Q(messaging_service_sid=number)
            ).first()
            if sender is None:
                raise CommandError(
                    f"{options['sender']} is not one of {org}'s senders", returncode=2
                )
        else:
            sender = senders.first()
            if sender is None:
                raise CommandError(f"{org} has no sending number", returncode=2)
        body = options["body"].strip()
        if not body:
            raise CommandError("--body is empty", returncode=2)
        kind = Broadcast.Audience.ACTIVE if options["to"] == "active" else Broadcast.Audience.ALL
        preview = broadcasts.preview(org=org, sender=sender, body=body, kind=kind)
        counts = {"sendable": preview.sendable, "skipped": preview.skipped}
        if not options["dry_run"] and preview.total:
            broadcast = broadcasts.broadcast_start(
                org=org, sender=sender, body=body, kind=kind, by=None, name="Command line"
            )
            counts["broadcast"] = broadcast.pk
        if options["json"]:
            self.stdout.write(json.dumps(counts, sort_keys=True))
            return
        self.stdout.write(f"sendable: {preview.sendable}")
        for reason, n in sorted(preview.skipped.items()):
            self.stdout.write(f"skipped {reason}: {n}")
        if "broadcast" in counts:
            self.stdout.write(f"broadcast {counts['broadcast']} started from {sender}")
        elif options["dry_run"]:
            self.stdout.write("dry run: nothing sent")
