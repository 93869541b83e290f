"""Celery tasks of gate notifications: thin interfaces that take row ids and call one
service. A failed attempt re-enqueues the task with a countdown (exponential backoff); the
attempts are counted on the row, not by Celery, so a task delivered twice, or early,
changes nothing."""

from celery import shared_task

from .email import email_send, emails_due
from .webhooks import webhook_attempt, webhooks_due


@shared_task(name="gates.notify.deliver_webhook")
def deliver_webhook(delivery_id: int) -> None:
    wait = webhook_attempt(delivery_id)
    if wait is not None:
        deliver_webhook.apply_async((delivery_id,), countdown=wait)


@shared_task(name="gates.notify.send_gate_email")
def send_gate_email(notification_id: int) -> None:
    wait = email_send(notification_id)
    if wait is not None:
        send_gate_email.apply_async((notification_id,), countdown=wait)


@shared_task(name="gates.notify.sweep")
def sweep() -> int:
    """Re-enqueue deliveries and emails whose task was lost."""
    webhook_ids, email_ids = webhooks_due(), emails_due()
    for delivery_id in webhook_ids:
        deliver_webhook.delay(delivery_id)
    for notification_id in email_ids:
        send_gate_email.delay(notification_id)
    return len(webhook_ids) + len(email_ids)
