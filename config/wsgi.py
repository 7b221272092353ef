"""WSGI entry point for gunicorn (config.wsgi:application)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.wsgi.get_wsgi_application does

# Staff pages through the whole middleware stack, API and probe requests through the shorter one.
from config.handlers import LaneWSGIHandler  # noqa: E402  (needs the app registry)

application = LaneWSGIHandler()

# Refuse to start (gunicorn reports the reason and exits) rather than answer the first page
# with a 500 because collectstatic was not run (config.checks).
from config.checks import refuse_to_start_without_static_files  # noqa: E402  (needs the app registry)

refuse_to_start_without_static_files()
