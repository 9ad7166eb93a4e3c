"""Reachable settings.

Everything comes from the environment (SPEC §9). The defaults run the product with nothing
installed: a SQLite file, tasks executed inside the web process, the simulator SMS backend.
Production values (SECRET_KEY, ALLOWED_HOSTS, DEBUG=0) only ever come from the environment.
"""

import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_str(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    """An on/off switch. Unset or empty gives the default; anything else must be one of the
    accepted words, because a typo (DEBUG=ture) read as "off" would change the product silently."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    accepted = ", ".join(f"{yes}/{no}" for yes, no in zip(TRUE_WORDS, FALSE_WORDS, strict=True))
    raise ImproperlyConfigured(
        f"{name}={os.environ[name]!r} is not an on/off value: use {accepted} "
        "(any case), or leave it empty for the default."
    )


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={os.environ[name]!r} is not a whole number; leave it empty for the default."
        ) from None


def env_decimal(name, default):
    """A price or other exact decimal amount (never a float: money adds up exactly)."""
    value = os.environ.get(name, "").strip() or default
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a decimal amount (e.g. 0.008); "
            "leave it empty for the default."
        ) from None
    if not amount.is_finite() or amount < 0:
        raise ImproperlyConfigured(f"{name}={value!r} must be zero or more.")
    return amount


def env_list(name, default=()):
    value = os.environ.get(name)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=True)
DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY must be set when DEBUG is off.")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tables2",
    "template_partials",
    "django_filters",
    "csp",
    "axes",
    "contacts",
    "deliverability",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "contacts.middleware.CurrentOrganizationMiddleware",
    # Last, as django-axes asks: it turns a lockout into its answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling per user name and address together: ten wrong passwords in a row lock that
# pair out for 15 minutes; a success resets the count, so normal use never locks anyone out.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = env_int("PROXY_COUNT", 0)

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "contacts.context_processors.organization",
            ],
        },
    },
]

# Database: a SQLite file by default; PostgreSQL (or anything dj-database-url reads) by URL.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("CONN_MAX_AGE", 60))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tasks run on threads of the web process when Redis is absent, so several connections
    # write at once: WAL and IMMEDIATE transactions keep SQLite from answering "locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    # Checking a kept connection before each request costs a round trip on every webhook; off,
    # a connection that died with a PostgreSQL restart fails one request (Twilio retries a
    # callback that did not get its 2xx) and is then replaced.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env_bool("CONN_HEALTH_CHECKS", default=False)
    # Planner costs for SSD storage (PostgreSQL's default of 4 assumes spinning disks): with it,
    # a few thousand index lookups beat a scan of 200k contacts, as they do on real hardware.
    random_page_cost = env_str("PG_RANDOM_PAGE_COST", "1.1")
    DATABASES["default"]["OPTIONS"]["options"] = f"-c random_page_cost={random_page_cost}"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # Storage; staff see dates in their organization's time zone.
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Content-Security-Policy: no inline script anywhere, from the first page on.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    },
}

# Security headers; the HTTPS-only ones follow DEBUG and may be relaxed by environment for
# plain-HTTP benchmarks on loopback.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Twilio and the SMS backend (SPEC §9).
SMS_BACKEND = env_str("SMS_BACKEND", "simulator")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_WEBHOOK_SIGNING_KEY = env_str("TWILIO_WEBHOOK_SIGNING_KEY")
TWILIO_BASE_URL = env_str("TWILIO_BASE_URL")
# Seconds a Twilio REST call may take; a send that times out is reconciled, never re-sent blind.
TWILIO_TIMEOUT = env_int("TWILIO_TIMEOUT", 10)
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
SIMULATOR_CHAOS = env_bool("SIMULATOR_CHAOS")
# Callbacks of the simulator are signed with the auth token when there is one, else with this.
SIMULATOR_AUTH_TOKEN = "reachable-simulator-development-token"
STATUS_UNAVAILABLE_AFTER = timedelta(minutes=env_int("STATUS_UNAVAILABLE_AFTER_MINUTES", 30))
MESSAGE_VALIDITY_SECONDS = env_int("MESSAGE_VALIDITY_SECONDS", 36000)

# Line-type lookups a second, across every worker (Twilio Lookup's own limit is higher; this
# keeps an import's lookups from crowding the account).
LOOKUP_RATE = float(env_str("LOOKUP_RATE", "20"))
# Numbers per Lookup v2 batch request (POST /v2/batch/query) on the twilio backend.
LOOKUP_BATCH_SIZE = env_int("LOOKUP_BATCH_SIZE", 50)
# What Twilio charges per lookup for each package (US list prices, USD, as of 2026-12-02), for
# the cost of an organization's lookups: line type intelligence, line status (beta),
# reassigned number.
LOOKUP_PRICE_LINE_TYPE = env_decimal("LOOKUP_PRICE_LINE_TYPE", "0.008")
LOOKUP_PRICE_LINE_STATUS = env_decimal("LOOKUP_PRICE_LINE_STATUS", "0.007")
LOOKUP_PRICE_REASSIGNED = env_decimal("LOOKUP_PRICE_REASSIGNED", "0.01")

# The cost ledger (deliverability.costs): what one SMS segment costs, in USD, by sender kind
# (Twilio's US list prices of July 2026; 10DLC is a long code), plus the carriers' pass-through
# fee per segment (AT&T, T-Mobile and Verizon charge $0.0025-$0.0062 by carrier and sender
# kind) and the fee for a message Twilio accepted that then failed. Twilio's own price of a
# message, when a status fetch returns it, replaces the estimate.
SMS_PRICE_LONG_CODE = env_decimal("SMS_PRICE_LONG_CODE", "0.0083")
SMS_PRICE_TOLL_FREE = env_decimal("SMS_PRICE_TOLL_FREE", "0.0083")
SMS_PRICE_SHORT_CODE = env_decimal("SMS_PRICE_SHORT_CODE", "0.0083")
SMS_CARRIER_FEE = env_decimal("SMS_CARRIER_FEE", "0.003")
SMS_FAILED_MESSAGE_FEE = env_decimal("SMS_FAILED_MESSAGE_FEE", "0.001")

# Celery. Without REDIS_URL, tasks run in-process on background threads (see config.celery).
REDIS_URL = env_str("REDIS_URL")
# Cache: Redis when there is one (shared by every process), else this process's memory. Callers
# treat the cache as optional: a dead Redis never fails a page.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
# A webhook must never hang on a dead broker: publishing gives up quickly, the event is
# already stored and the sweeper processes it later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": 2,
    "socket_connect_timeout": 2,
    "max_retries": 1,
    "visibility_timeout": 3600,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
# How tasks run without Redis: "thread" (background threads of this process, the default) or
# "sync" (at once, in the caller; the test suite uses it).
TASKS_IN_PROCESS = env_str("TASKS_IN_PROCESS", "thread")
# Periodic tasks (Celery beat, or the in-process scheduler without Redis).
CELERY_BEAT_SCHEDULE = {
    "end-expired-pauses": {
        "task": "deliverability.tasks.end_expired_pauses",
        "schedule": timedelta(minutes=5),
    },
    "apply-review-deadlines": {
        "task": "deliverability.tasks.apply_review_deadlines",
        "schedule": timedelta(minutes=15),
    },
    "refresh-stale-lookups": {
        "task": "deliverability.tasks.refresh_stale_lookups",
        "schedule": timedelta(hours=1),
    },
    "process-stored-events": {
        "task": "conversations.tasks.process_events",
        "schedule": timedelta(seconds=30),
    },
    "dispatch-broadcasts": {
        "task": "conversations.tasks.dispatch_broadcasts",
        "schedule": timedelta(seconds=5),
    },
    "sweep-messages": {
        "task": "conversations.tasks.sweep_messages",
        "schedule": timedelta(minutes=1),
    },
    "reconcile-stuck-messages": {
        "task": "conversations.tasks.reconcile_stuck_messages",
        "schedule": timedelta(minutes=5),
    },
    "expire-overdue-messages": {
        "task": "conversations.tasks.expire_overdue_messages",
        "schedule": timedelta(minutes=10),
    },
    "import-deactivations-daily": {
        "task": "deliverability.tasks.import_deactivations_daily",
        "schedule": crontab(hour=9, minute=0),
    },
}

# One console handler whose formatter masks phone numbers in the whole line, traceback included
# (config/logfilters.py). Web processes, Celery workers (config/celery.py keeps Celery from
# installing handlers of its own) and runserver all log through it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "class": "config.logfilters.MaskingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "server": {
            "class": "config.logfilters.MaskingFormatter",
            "format": "%(asctime)s %(message)s",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "server": {"class": "logging.StreamHandler", "formatter": "server"},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's defaults give "django" a console handler of its own when DEBUG is on: every
        # line twice, once unmasked. Its records go to the root handler only.
        "django": {"handlers": [], "level": "INFO"},
        # runserver's request lines carry query strings (a staff search for a number).
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
    },
}
