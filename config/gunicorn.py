"""gunicorn settings for the web process: `gunicorn -c config/gunicorn.py config.wsgi`."""

import multiprocessing
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Sync workers: every request is short (webhooks store and answer; pages are paginated).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that a slow leak never grows without bound.
max_requests = 5000
max_requests_jitter = 500
accesslog = "-"
errorlog = "-"
# Behind a proxy that terminates TLS: trust its X-Forwarded-Proto.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's own lines go through the masking formatter of the Django processes: an access line
# carries the query string, and a staff search puts a phone number there
# (/contacts/?q=%2B16175550101). Each logger has one handler and does not propagate, so that the
# root handler Django installs in a worker does not print the line a second time.
logconfig_dict = {
    "root": {"level": "INFO", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access_console"], "propagate": False},
    },
    "handlers": {
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "error",
            "stream": "ext://sys.stderr",
        },
        "access_console": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stdout",
        },
    },
    "formatters": {
        "error": {
            "class": "config.logfilters.MaskingFormatter",
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
        "access": {"class": "config.logfilters.MaskingFormatter", "format": "%(message)s"},
    },
}
