"""System checks for the settings the engine depends on (`manage.py check`, and every
`manage.py` command and worker at start). Each names the setting and what breaks."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register("fcore")
def engine_settings(app_configs, **kwargs):
    from fcore.celery import app

    errors = []
    if not app.conf.get("CELERY_DB_REUSE_MAX"):
        errors.append(Error(
            "CELERY_DB_REUSE_MAX is not set on the Celery app: Celery's Django fix-up then "
            "closes the database connection around every task, and each step connects "
            "anew.", hint="Set app.conf['CELERY_DB_REUSE_MAX'] in fcore/celery.py.",
            id="fcore.E010"))
    if not settings.CELERY_TASK_ACKS_LATE:
        errors.append(Error(
            "CELERY_TASK_ACKS_LATE is off: a task is acknowledged before it runs, so a "
            "worker that dies mid-step loses the message and the step waits for its lease "
            "to expire.", hint="Set CELERY_TASK_ACKS_LATE = True.", id="fcore.E011"))
    if not settings.CELERY_TASK_REJECT_ON_WORKER_LOST:
        errors.append(Error(
            "CELERY_TASK_REJECT_ON_WORKER_LOST is off: with late acks, the task of a worker "
            "killed mid-step is acknowledged as if it had run.",
            hint="Set CELERY_TASK_REJECT_ON_WORKER_LOST = True.", id="fcore.E012"))
    if settings.FCORE_STEP_LEASE_S <= 0:
        errors.append(Error(
            f"FCORE_STEP_LEASE_S is {settings.FCORE_STEP_LEASE_S}: a running step's lease "
            "must last a positive number of seconds.", id="fcore.E013"))
    for name in ("FCORE_STEP_MAX_REDELIVERIES", "FCORE_STEP_CHAIN_MAX"):
        if getattr(settings, name) < 0:
            errors.append(Error(f"{name} is {getattr(settings, name)}: it cannot be negative.",
                                id="fcore.E014"))
    if settings.FCORE_SUBWORKFLOW_MAX_DEPTH < 1:
        errors.append(Error(
            f"FCORE_SUBWORKFLOW_MAX_DEPTH is {settings.FCORE_SUBWORKFLOW_MAX_DEPTH}: every "
            "`type: workflow` step would fail; it must be at least 1.", id="fcore.E015"))
    if settings.CELERY_WORKER_PREFETCH_MULTIPLIER != 1:
        errors.append(Warning(
            f"CELERY_WORKER_PREFETCH_MULTIPLIER is {settings.CELERY_WORKER_PREFETCH_MULTIPLIER}:"
            " a worker holds messages another worker could run, and a step waits behind a "
            "long one.", hint="Set CELERY_WORKER_PREFETCH_MULTIPLIER = 1.", id="fcore.W010"))
    return errors
