"""Webhooks of a run's end (issue 20 item 2, DESIGN §12): `run.completed`, `run.failed` and
`run.cancelled`, written in the transaction that seals the run, delivered to a real HTTP
receiver on 127.0.0.1 and verified there with the `standardwebhooks` reference library.
Run events are asked for by name: an endpoint created without `events` takes the gate
events only."""

import pytest
from django.db import transaction
from standardwebhooks import Webhook, WebhookVerificationError

from gates.models import RUN_EVENTS, WebhookDelivery
from runs.models import Run
from runs.services import run_create, run_set_status, step_report

from .webhook_receiver import endpoint_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quick_retries")]
STEPS = ("step_1", "step_2", "step_3", "step_4", "step_5")


def _run(tenant, advance) -> Run:
    with advance():
        run, _ = run_create(tenant=tenant, workflow="pt004_execution_spine",
                            input={"amount": 5}, actor="user:olivia")
    return run


def _report(tenant, advance, run, step_id, status="succeeded"):
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id=step_id, actor="client:exec",
                    status=status, output={"ok": True} if status == "succeeded" else None,
                    error=None if status == "succeeded" else {"detail": "broke"})


def _verified(secret, receiver) -> list[dict]:
    return [Webhook(secret).verify(body, headers) for _, headers, body in receiver.requests]


def test_a_completed_run_is_posted_signed_with_its_seal(pt004, advance, receiver_factory):
    receiver = receiver_factory()
    _, secret = endpoint_for(pt004, receiver, events=list(RUN_EVENTS))
    run = _run(pt004, advance)
    for step_id in STEPS:
        _report(pt004, advance, run, step_id)
    run.refresh_from_db()
    assert run.status == "completed"
    (payload,) = _verified(secret, receiver)
    assert payload["event"] == "run.completed"
    assert payload["tenant"] == "tenant_omega"
    assert payload["run"]["run_id"] == str(run.run_id)
    assert payload["run"]["status"] == "completed"
    assert payload["run"]["workflow"] == "pt004_execution_spine"
    assert payload["run"]["workflow_hash"] == run.workflow_hash
    assert payload["audit"]["code"] == "FC-RUN-003"  # the seal
    assert payload["links"]["api"].endswith(f"/workflows/runs/{run.run_id}")
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "run.completed" and delivery.gate is None
    assert delivery.status == "delivered" and payload["id"] == str(delivery.delivery_id)
    # a tampered body does not verify
    (_, headers, body), = receiver.requests
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"completed", b"cancelled"), headers)


def test_failed_and_cancelled_runs_are_posted(pt004, advance, receiver_factory):
    receiver = receiver_factory()
    _, secret = endpoint_for(pt004, receiver, events=list(RUN_EVENTS))
    failing = _run(pt004, advance)
    _report(pt004, advance, failing, "step_1", status="failed")
    cancelled = _run(pt004, advance)
    with advance():
        run_set_status(tenant=pt004, run_id=cancelled.run_id, status="cancelled",
                       actor="user:otto", reason="not needed")
    bodies = _verified(secret, receiver)
    assert [(b["event"], b["run"]["run_id"], b["run"]["status"]) for b in bodies] == [
        ("run.failed", str(failing.run_id), "failed"),
        ("run.cancelled", str(cancelled.run_id), "cancelled")]
    assert bodies[1]["run"]["status_reason"] == "not needed"


def test_only_endpoints_that_ask_get_run_events(pt004, advance, receiver_factory):
    default, only_failed = receiver_factory(), receiver_factory()
    endpoint, _ = endpoint_for(pt004, default)  # no events named: the gate events
    assert "run.completed" not in endpoint.events
    endpoint_for(pt004, only_failed, events=["run.failed"])
    run = _run(pt004, advance)
    with advance():
        run_set_status(tenant=pt004, run_id=run.run_id, status="cancelled", actor="user:o")
    assert default.requests == [] and only_failed.requests == []
    assert WebhookDelivery.objects.count() == 0


def test_the_delivery_is_written_with_the_runs_end_or_not_at_all(pt004, advance,
                                                                  receiver_factory):
    receiver = receiver_factory()
    endpoint_for(pt004, receiver, events=list(RUN_EVENTS))
    run = _run(pt004, advance)
    with pytest.raises(RuntimeError), transaction.atomic():
        run_set_status(tenant=pt004, run_id=run.run_id, status="cancelled", actor="user:o")
        assert WebhookDelivery.objects.filter(event="run.cancelled").count() == 1
        raise RuntimeError("the change rolls back")
    run.refresh_from_db()
    assert run.status == "running"
    assert WebhookDelivery.objects.count() == 0 and receiver.requests == []
