import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# Every URL module and view now, when a worker starts, rather than during the first request it
# serves (gunicorn recycles its workers): a webhook never waits for imports.
get_resolver().url_patterns  # noqa: B018
