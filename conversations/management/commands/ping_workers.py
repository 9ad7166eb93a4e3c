from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.celery import app


class Command(BaseCommand):
    help = "Ping the Celery workers through Redis; exit 1 when none answers (for health checks)."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=3.0)

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            self.stdout.write("REDIS_URL is not set: tasks run inside the web process.")
            return
        replies = app.control.ping(timeout=options["timeout"]) or []
        if not replies:
            raise CommandError("no Celery worker answered")
        for reply in replies:
            for name, answer in reply.items():
                self.stdout.write(f"{name}: {answer.get('ok', answer)}")
