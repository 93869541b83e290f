"""Federation Core project package: settings, URLs, Celery app, tenancy, token auth, errors."""

from .celery import app as celery_app

__all__ = ["celery_app"]
