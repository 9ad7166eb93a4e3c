from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import pluralize

from deliverability.deactivations import import_deactivations


def _day(value):
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date in YYYY-MM-DD form.") from exc


class Command(BaseCommand):
    help = "Import the carrier deactivation list for a day (or a range): opts those numbers out."

    def add_arguments(self, parser):
        parser.add_argument("--date", required=True, help="YYYY-MM-DD")
        parser.add_argument("--until", help="YYYY-MM-DD, inclusive: import every day up to it")

    def handle(self, *args, **options):
        first = _day(options["date"])
        last = _day(options["until"]) if options["until"] else first
        if last < first:
            raise CommandError("--until must not be before --date.")
        if (last - first).days > 366:
            raise CommandError("Import at most a year at a time.")
        total = 0
        day = first
        while day <= last:
            result = import_deactivations(day)
            if result.already_imported:
                self.stdout.write(f"{day}: already imported ({result.listed} listed), no change")
            else:
                self.stdout.write(
                    f"{day}: {result.listed} numbers listed, {result.opted_out} opted out"
                )
            total += result.opted_out
            day += timedelta(days=1)
        self.stdout.write(self.style.SUCCESS(f"{total} number{pluralize(total)} opted out"))
