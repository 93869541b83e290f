"""WSGI entry point (gunicorn fcore.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
application = get_wsgi_application()
