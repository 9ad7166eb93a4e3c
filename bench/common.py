"""What every benchmark shares: the bench database, timing, and the figure it reports."""

import os
import statistics
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit, urlunsplit

BENCH_DB = os.environ.get("BENCH_DATABASE", "reachable_bench")
BIG_ORG, SMALL_ORG = "bench-club", "bench-small"
BIG_SIZE = (200_000, 1_000_000)  # contacts, messages
SMALL_SIZE = (2_000, 10_000)


@dataclass
class Figure:
    benchmark: str
    name: str
    value: float
    unit: str
    floor: str = ""
    ok: bool | None = None  # None: informative, no floor

    def as_dict(self):
        return asdict(self)


class BenchmarkError(Exception):
    """A benchmark cannot run here; the text says what is missing."""


def bench_database_url():
    """The URL of the bench database on the PostgreSQL server of DATABASE_URL."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise BenchmarkError(
            "benchmarks run on PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{BENCH_DB}", parts.query, ""))


def own_database(name):
    """The URL of a benchmark's own database `name` on the server of DATABASE_URL, created
    when missing (its tables are the benchmark's to migrate)."""
    import psycopg

    parts = urlsplit(bench_database_url())
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def child_env(url, **overrides):
    """The environment of a benchmark's child process on the database at `url`: tasks run in
    the child itself, nothing is sent, only warnings are logged."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "TASKS_IN_PROCESS": "sync",
        "SMS_BACKEND": "locmem",
        "LOG_LEVEL": "WARNING",
        **overrides,  # any of the above may be overridden
    }


def served_env(url, *, redis_url, port=9, twilio=None, **overrides):
    """The environment of the product as a benchmark runs it in production shape on loopback:
    DEBUG off, plain HTTP, tasks on Celery when `redis_url` is set, the Twilio backend pointed
    at `twilio` (a tests.fake_twilio stand-in) when one is given, only warnings logged."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        # As in production: DEBUG off (with it, every query is also kept in memory).
        "DEBUG": "0",
        "SECRET_KEY": os.urandom(32).hex(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "PYTHONWARNINGS": "ignore",  # whitenoise's "no directory at staticfiles/", per worker
    }
    if twilio is not None:
        from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN

        env.update(
            SMS_BACKEND="twilio",
            TWILIO_BASE_URL=twilio.url,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        )
    env.update(overrides)
    env.pop("TASKS_IN_PROCESS", None)
    return env


def bulk_workers():
    """The arguments of each `bulk` worker of the README's layout: two workers of 16 threads,
    each thread holding a second chunk ready (`BENCH_BULK_PROCESSES`, `BENCH_BULK_THREADS` and
    `BENCH_BULK_PREFETCH` try others)."""
    processes = int(os.environ.get("BENCH_BULK_PROCESSES", "2"))
    threads = os.environ.get("BENCH_BULK_THREADS", "16")
    prefetch = os.environ.get("BENCH_BULK_PREFETCH", "2")
    pool = ["-P", "threads", "-c", threads, "--prefetch-multiplier", prefetch]
    return [["-Q", "bulk", *pool, "-n", f"bulk{n + 1}@%h"] for n in range(processes)]


def ensure_database():
    """Create the bench database when missing (on the same server), then point Django at it."""
    import psycopg

    url = bench_database_url()
    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("TASKS_IN_PROCESS", "sync")
    os.environ.setdefault("SMS_BACKEND", "locmem")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return url


def ensure_seeded(slug, contacts, messages):
    """Seed the org up to the size asked for (reused on later runs)."""
    from django.core.management import call_command

    from contacts.models import Contact, Organization
    from conversations.models import Message

    org = Organization.objects.filter(slug=slug).first()
    have_contacts = Contact.objects.filter(organization=org).count() if org else 0
    have_messages = Message.objects.filter(organization=org).count() if org else 0
    if have_contacts < contacts or have_messages < messages:
        print(f"seeding {slug}: {contacts} contacts, {messages} messages (once)…", flush=True)
        call_command(
            "seed",
            "--org",
            slug,
            "--contacts",
            str(max(0, contacts - have_contacts)),
            "--messages",
            str(max(0, messages - have_messages)),
            "--batch",
            "20000",
        )
    return Organization.objects.get(slug=slug)


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def timed(function, repeat):
    """Run `function` `repeat` times; the durations in milliseconds."""
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def median(values):
    return statistics.median(values) if values else 0.0
