"""Notifications about gates: email and signed webhooks (PT-005 item 8); and signed
webhooks about a run's end (`run_notify`, from the engine's run seal) and an external step
waiting for an executor (`step_ready_notify`).

`gate_notify` is called by `gates.services` inside the transaction that opens, escalates or
resolves a gate. It writes outbox rows (`WebhookDelivery`, `EmailNotification`) in that same
transaction and, on commit, enqueues one Celery task per row (`gates.notify.tasks`). Tasks
take row ids and are safe to deliver twice: a webhook attempt first claims its row
(compare-and-set), an email is sent under its row lock and only while pending. The beat
task `gates.notify.sweep` re-enqueues rows whose task was lost.

Modules: `webhooks` (signing, outbox rows, attempts; the endpoints themselves are in
`gates.webhook_endpoints`), `email` (recipients, rendering, sending),
`links` (one-click review links), `tasks` (the Celery interface).
"""

import logging

from django.conf import settings
from django.db import transaction

log = logging.getLogger("fcore.notify")

EVENT_OPENED = "gate.opened"
EVENT_ESCALATED = "gate.escalated"
EVENT_RESOLVED = "gate.resolved"
EVENT_STEP_READY = "step.ready"


def gate_payload(*, gate, run, event: str, audit_event=None) -> dict:
    """The JSON a webhook receives about one gate event (without its delivery `id`)."""
    base = settings.FCORE_PUBLIC_URL
    resolution = dict(gate.resolution or {})
    votes = resolution.get("votes")  # a resolved gate's record of its votes
    approvals = (sum(vote["decision"] == "approve" for vote in votes) if votes is not None
                 else gate.approvals.filter(decision="approve").count())
    return {
        "event": event,
        "tenant": run.tenant.slug,
        "run": {"run_id": str(run.run_id), "workflow": run.definition.name,
                "workflow_version": run.definition.version},
        "gate": {
            "gate_id": gate.id, "step_id": gate.step_id, "status": gate.status,
            "source": gate.source, "reason": gate.reason,
            "required_approvals": gate.required_approvals, "approvals": approvals,
            "approver_group": gate.approver_group, "escalate_to": gate.escalate_to or None,
            "expires_at": gate.expires_at.isoformat() if gate.expires_at else None,
            "resolved_at": gate.resolved_at.isoformat() if gate.resolved_at else None,
            "resolution": resolution or None, "needs_review": gate.needs_review,
        },
        "audit": ({"stream": run.stream_name, "seq": audit_event.seq, "code": audit_event.code,
                   "at": audit_event.at, "hash": audit_event.hash} if audit_event else None),
        "links": {"console": f"{base}/console/runs/{run.run_id}/",
                  "api": f"{base}/workflows/runs/{run.run_id}/gates/{gate.id}"},
    }


def gate_notify(*, gate, run, event: str, audit_event=None) -> None:
    """Write the outbox rows of one gate event; enqueue their tasks when the change commits.

    Must run inside the transaction of the change (the caller holds the run lock)."""
    from .email import email_notifications_create
    from .webhooks import webhook_deliveries_create

    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("gate_notify must run inside the transaction of the change")
    payload = gate_payload(gate=gate, run=run, event=event, audit_event=audit_event)
    webhook_ids = webhook_deliveries_create(gate=gate, event=event, payload=payload)
    email_ids = email_notifications_create(gate=gate, run=run, event=event)
    if webhook_ids or email_ids:
        transaction.on_commit(lambda: notify_enqueue(webhook_ids, email_ids), robust=True)


RUN_EVENT_OF_STATUS = {"completed": "run.completed", "failed": "run.failed",
                       "cancelled": "run.cancelled"}


def run_payload(*, run, event: str, audit_event=None) -> dict:
    """The JSON a webhook receives about a run's end (without its delivery `id`); the
    run's output and steps are read through the API (`links.api`)."""
    base = settings.FCORE_PUBLIC_URL
    return {
        "event": event,
        "tenant": run.tenant.slug,
        "run": {"run_id": str(run.run_id), "workflow": run.definition.name,
                "workflow_version": run.definition.version, "status": run.status,
                "status_reason": run.status_reason, "workflow_hash": run.workflow_hash,
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "ended_at": run.ended_at.isoformat() if run.ended_at else None},
        "audit": ({"stream": run.stream_name, "seq": audit_event.seq, "code": audit_event.code,
                   "at": audit_event.at, "hash": audit_event.hash} if audit_event else None),
        "links": {"console": f"{base}/console/runs/{run.run_id}/",
                  "api": f"{base}/workflows/runs/{run.run_id}"},
    }


def run_notify(*, run, audit_event=None) -> None:
    """Write the webhook outbox rows of a run's end (`run.completed`, `run.failed`,
    `run.cancelled`, from its final status); enqueue them when the change commits.

    Must run inside the transaction that seals the run (the caller holds the run lock)."""
    from .webhooks import webhook_deliveries_create

    event = RUN_EVENT_OF_STATUS.get(str(run.status))
    if event is None:
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("run_notify must run inside the transaction of the change")
    payload = run_payload(run=run, event=event, audit_event=audit_event)
    webhook_ids = webhook_deliveries_create(tenant_id=run.tenant_id, event=event,
                                            payload=payload)
    if webhook_ids:
        transaction.on_commit(lambda: notify_enqueue(webhook_ids, []), robust=True)


def notify_enqueue(webhook_ids: list[int], email_ids: list[int]) -> None:
    """One task per outbox row. A broker failure here is logged, never raised: the rows
    stay pending and the sweep picks them up."""
    from .tasks import deliver_webhook, send_gate_email

    for delivery_id in webhook_ids:
        deliver_webhook.delay(delivery_id)
    for notification_id in email_ids:
        send_gate_email.delay(notification_id)


def step_ready_notify(*, run, step) -> None:
    """`step.ready`: an external step is running and waits for an executor. Writes the
    outbox rows in the transaction that started the step; delivered and signed as gate
    events are."""
    from .webhooks import webhook_deliveries_create

    base = settings.FCORE_PUBLIC_URL
    payload = {
        "event": EVENT_STEP_READY, "tenant": run.tenant.slug,
        "run": {"run_id": str(run.run_id), "workflow": run.definition.name,
                "workflow_version": run.definition.version},
        "step": {"step_id": step.step_id, "step_type": step.step_type,
                 "attempt": step.attempt},
        "links": {"console": f"{base}/console/runs/{run.run_id}/",
                  "claim": f"{base}/workflows/tasks/claim"},
    }
    webhook_ids = webhook_deliveries_create(tenant_id=run.tenant_id, event=EVENT_STEP_READY,
                                            payload=payload)
    if webhook_ids:
        transaction.on_commit(lambda: notify_enqueue(webhook_ids, []), robust=True)
