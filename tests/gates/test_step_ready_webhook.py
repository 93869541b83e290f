"""`step.ready` (DESIGN §12): an external step waiting for an executor is posted to the
endpoints that take it, signed per Standard Webhooks as gate events are; opt-in."""

import json

import pytest
from standardwebhooks import Webhook

from gates.models import WebhookDelivery
from runs.services import run_create, step_report

from .webhook_receiver import endpoint_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quick_retries")]


def test_an_external_step_waiting_is_posted_signed(pt004, advance, receiver_factory):
    receiver = receiver_factory()
    _, secret = endpoint_for(pt004, receiver, events=["step.ready"])
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            input={"amount": 5}, actor="user:olivia")
    with advance():
        step_report(tenant=pt004, run_id=run.run_id, step_id="step_1", actor="client:x",
                    status="succeeded", output={})
    bodies = []
    for _, headers, body in receiver.requests:
        payload = Webhook(secret).verify(body, headers)  # raises unless signed right
        assert headers["X-FC-Event"] == "step.ready"
        bodies.append(json.loads(body))
    assert [(b["event"], b["step"]["step_id"], b["step"]["attempt"]) for b in bodies] == [
        ("step.ready", "step_1", 1), ("step.ready", "step_2", 1)]
    assert payload["run"]["run_id"] == str(run.run_id)
    assert payload["step"]["step_type"] == "external"
    assert payload["links"]["claim"].endswith("/workflows/tasks/claim")


def test_step_ready_is_opt_in(pt004, advance, receiver_factory):
    receiver = receiver_factory()
    endpoint, _ = endpoint_for(pt004, receiver)  # default events
    assert "step.ready" not in endpoint.events and "gate.opened" in endpoint.events
    with advance():
        run_create(tenant=pt004, workflow="pt004_execution_spine", input={"amount": 5},
                   actor="user:olivia")
    assert not WebhookDelivery.objects.filter(event="step.ready").exists()
    assert receiver.requests == []
