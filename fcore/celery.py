"""The Celery application: configured from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
app = Celery("fcore")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the database connection around every task unless
# `app.conf["CELERY_DB_REUSE_MAX"]` is set (it reads that key, not the environment); a new
# PostgreSQL connection per task costs more than the task itself (DESIGN §11).
app.conf["CELERY_DB_REUSE_MAX"] = 1000
app.autodiscover_tasks()


@task_postrun.connect
def _drop_failed_db_connections(**_kwargs) -> None:
    """With CELERY_DB_REUSE_MAX Celery no longer closes connections around tasks, and
    Django checks a connection only at web-request boundaries: a connection that failed
    (PostgreSQL restarted, a backend terminated) is dropped here if unusable, so the next
    task connects anew instead of failing on it. Costs a flag check per task."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.errors_occurred:
            conn.close_if_unusable_or_obsolete()


@task_prerun.connect
def _task_metrics_start(**kwargs) -> None:
    """Celery task figures (fcore.metrics): the start of the run time."""
    from fcore.metrics import task_started

    task_started(**kwargs)


@task_postrun.connect
def _task_metrics_end(**kwargs) -> None:
    """Celery task figures (fcore.metrics): the count by end state and the run time."""
    from fcore.metrics import task_ended

    task_ended(**kwargs)


@worker_ready.connect
def _worker_metrics(**kwargs) -> None:
    """FCORE_WORKER_METRICS_PORT: the worker serves its machine's figures (fcore.metrics)."""
    from fcore.metrics import worker_metrics_serve

    worker_metrics_serve(**kwargs)
