"""Celery tasks of the audit app: thin interfaces over `audit.checkpoints` and
`audit.verifications`."""

from celery import shared_task

from .checkpoints import checkpoints_seal_all
from .verifications import VERIFY_TASK, audit_verification_run


@shared_task(name="audit.tasks.seal_checkpoints")
def seal_checkpoints() -> int:
    """Beat task (every FCORE_CHECKPOINT_INTERVAL_S): a checkpoint per changed tenant."""
    return checkpoints_seal_all()


@shared_task(name=VERIFY_TASK)
def verify_tenant(verification_id: int) -> bool:
    """Run one requested verification (`audit.verifications`); safe to deliver twice."""
    return audit_verification_run(verification_id)
