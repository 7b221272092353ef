"""WSGI entry point for gunicorn (config.wsgi:application)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Refuse to start (gunicorn reports the reason and exits) rather than answer the first page
# with a 500 because collectstatic was not run (config.checks).
from config.checks import refuse_to_start_without_static_files  # noqa: E402  (needs the app registry)

refuse_to_start_without_static_files()
