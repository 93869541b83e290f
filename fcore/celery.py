"""The Celery application: configured from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
app = Celery("fcore")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the database connection around every task unless
# `app.conf["CELERY_DB_REUSE_MAX"]` is set (it reads that key, not the environment); a new
# PostgreSQL connection per task costs more than the task itself (DESIGN §11).
app.conf["CELERY_DB_REUSE_MAX"] = 1000
app.autodiscover_tasks()
