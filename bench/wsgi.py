import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018  (as config.wsgi: views imported at start)
