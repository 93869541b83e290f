"""Celery tasks of the fcore app: thin interfaces over `fcore.heartbeats`."""

from celery import shared_task

from .heartbeats import heartbeat_tick

HEARTBEAT_TASK = "fcore.tasks.heartbeat"


@shared_task(name=HEARTBEAT_TASK, ignore_result=True)
def heartbeat() -> str:
    """Beat task (every FCORE_HEARTBEAT_INTERVAL_S): beat's last tick, for `/readyz`."""
    return heartbeat_tick().isoformat()
