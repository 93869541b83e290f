"""The Celery application: configured from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
# Celery's Django fixup closes the database connection around every task unless this is
# set; reusing it doubles the engine's throughput (DESIGN §11).
os.environ.setdefault("CELERY_DB_REUSE_MAX", "1000")

app = Celery("fcore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
