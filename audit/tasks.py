"""Celery tasks of the audit app: thin interfaces over `audit.checkpoints`."""

from celery import shared_task

from .checkpoints import checkpoints_seal_all


@shared_task(name="audit.tasks.seal_checkpoints")
def seal_checkpoints() -> int:
    """Beat task (every FCORE_CHECKPOINT_INTERVAL_S): a checkpoint per changed tenant."""
    return checkpoints_seal_all()
