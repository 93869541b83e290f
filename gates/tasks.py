"""Celery tasks of the gates app, where `autodiscover_tasks` looks for them."""

from .notify.tasks import deliver_webhook, send_gate_email, sweep

__all__ = ["deliver_webhook", "send_gate_email", "sweep"]
