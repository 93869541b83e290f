"""Signed webhooks (PT-005 item 8): a real HTTP receiver on 127.0.0.1 checks signatures
from its side; retries, backoff, the allow-list, the delivery log and the sweep."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from fcore.errors import BadRequest
from gates.models import (
    OVERRIDE_PERMISSION,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from gates.notify.tasks import sweep
from gates.notify.webhooks import (
    backoff_s,
    webhook_attempt,
    webhook_signature,
    webhook_signature_verify,
    webhooks_due,
)
from gates.services import Voter
from gates.webhook_endpoints import webhook_endpoint_create, webhook_endpoint_secret
from runs.services import (
    gates_expire_due,
    run_create,
    run_gate_override,
    run_gate_vote,
    run_request_gate,
)
from tests.conftest import person

from .webhook_receiver import endpoint_for, open_gate, receiver_verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quick_retries")]


# --- signatures ----------------------------------------------------------------------------

def test_a_gate_opening_is_posted_signed_and_verifies_at_the_receiver(pt004, advance,
                                                                      receiver_factory):
    receiver = receiver_factory()
    endpoint, secret = endpoint_for(pt004, receiver)
    assert secret.startswith("whsec_") and webhook_endpoint_secret(endpoint) == secret
    gate = open_gate(pt004, advance)
    (path, headers, body), = receiver.requests
    assert path == "/hooks/fc"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-FC-Event"] == "gate.opened"
    assert receiver_verify(secret, headers, body)
    payload = json.loads(body)
    assert payload["event"] == "gate.opened" and payload["id"] == headers["X-FC-Delivery"]
    assert payload["tenant"] == "tenant_omega"
    assert payload["gate"]["gate_id"] == gate.id and payload["gate"]["status"] == "open"
    assert payload["gate"]["required_approvals"] == 2 and payload["gate"]["step_id"] == "sign_off"
    assert payload["run"] == {"run_id": str(gate.run_id), "workflow": "vendor_payment",
                              "workflow_version": 1}
    assert payload["audit"]["code"] == "FC-GATE-001" and len(payload["audit"]["hash"]) == 64
    assert payload["links"]["console"].endswith(f"/console/runs/{gate.run_id}/")
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.delivered_at is not None
    assert str(delivery.delivery_id) == headers["X-FC-Delivery"]

    # what the receiver must refuse
    assert not receiver_verify(secret, headers, body.replace(b"open", b"shut"))
    assert not receiver_verify("whsec_other", headers, body)
    assert not receiver_verify(secret, headers, body, now=int(headers["X-FC-Timestamp"]) + 301)
    assert receiver_verify(secret, headers, body, now=int(headers["X-FC-Timestamp"]) + 299)
    # the product's own verifier agrees
    assert webhook_signature_verify(secret=secret, body=body,
                                    timestamp=headers["X-FC-Timestamp"],
                                    signature=headers["X-FC-Signature"])
    assert not webhook_signature_verify(secret=secret, body=body, timestamp="1700000000",
                                        signature=webhook_signature(secret, 1700000000, body))
    assert not webhook_signature_verify(secret=secret, body=body, timestamp="soon",
                                        signature=headers["X-FC-Signature"])


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert webhook_signature("k", 1700000000, b"{}") == f"v1={expected}"


# --- which events go where -----------------------------------------------------------------

def test_resolution_escalation_expiry_and_override_are_notified(pt004, advance,
                                                                receiver_factory):
    receiver = receiver_factory()
    _, secret = endpoint_for(pt004, receiver)
    gate = open_gate(pt004, advance)
    voter = Voter(actor="user:adam", groups=frozenset({"approvers"}))
    with advance():
        run_gate_vote(tenant=pt004, run_id=gate.run_id, gate_id=gate.id, voter=voter,
                      decision="reject", comment="wrong vendor")
    resolved = receiver.bodies()[-1]
    assert resolved["event"] == "gate.resolved" and resolved["gate"]["status"] == "rejected"
    assert resolved["gate"]["resolution"]["votes"] == [
        {"actor": "user:adam", "decision": "reject", "comment": "wrong vendor"}]

    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            actor="user:olivia", input={"amount": 1})
    with advance():
        escalating = run_request_gate(
            tenant=pt004, run_id=run.run_id, actor="client:exec", reason="odd", step_id="step_1",
            settings={"on_timeout": "escalate", "escalate_to": "operators", "expires_in": 60})
    with advance():
        gates_expire_due(now=timezone.now() + timedelta(seconds=120))
    escalated = receiver.bodies()[-1]
    assert escalated["event"] == "gate.escalated"
    assert escalated["gate"]["gate_id"] == escalating.id
    assert escalated["gate"]["resolution"] == {"escalated": True}
    with advance():
        gates_expire_due(now=timezone.now() + timedelta(hours=1))
    expired = receiver.bodies()[-1]
    assert (expired["event"], expired["gate"]["status"]) == ("gate.resolved", "expired")

    third = open_gate(pt004, advance)
    with advance():
        run_gate_override(tenant=pt004, run_id=third.run_id, gate_id=third.id,
                          actor="user:otto", justification="deadline",
                          user=person("otto-acting", OVERRIDE_PERMISSION))
    overridden = receiver.bodies()[-1]
    assert overridden["gate"]["status"] == "overridden"
    assert overridden["gate"]["needs_review"] is True
    assert overridden["gate"]["resolution"]["justification"] == "deadline"
    assert overridden["audit"]["code"] == "FC-GATE-005"
    assert all(receiver_verify(secret, h, b) for _, h, b in receiver.requests)
    assert [b["event"] for b in receiver.bodies()] == [
        "gate.opened", "gate.resolved", "gate.opened", "gate.escalated", "gate.resolved",
        "gate.opened", "gate.resolved"]


def test_endpoints_get_only_their_events_and_inactive_ones_nothing(pt004, advance,
                                                                   receiver_factory):
    only_resolved, inactive = receiver_factory(), receiver_factory()
    endpoint_for(pt004, only_resolved, events=["gate.resolved"])
    endpoint, _ = endpoint_for(pt004, inactive)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    open_gate(pt004, advance)
    assert only_resolved.requests == [] and inactive.requests == []
    assert WebhookDelivery.objects.count() == 0


def test_endpoints_of_another_tenant_hear_nothing(pt004, other_tenant, advance,
                                                  receiver_factory):
    receiver = receiver_factory()
    endpoint_for(other_tenant, receiver)
    open_gate(pt004, advance)
    assert receiver.requests == []


# --- retries, backoff, time-outs, the log -----------------------------------------------------

def test_failed_attempts_are_retried_and_each_is_logged(pt004, advance, receiver_factory):
    receiver = receiver_factory(statuses=[503, 500, 200])
    _, secret = endpoint_for(pt004, receiver)
    open_gate(pt004, advance)
    assert len(receiver.requests) == 3
    delivery_ids = {h["X-FC-Delivery"] for _, h, _ in receiver.requests}
    assert len(delivery_ids) == 1  # one delivery, three attempts
    assert all(receiver_verify(secret, h, b) for _, h, b in receiver.requests)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    assert [a["status_code"] for a in delivery.attempt_log] == [503, 500, 200]
    assert [a["error"] for a in delivery.attempt_log] == ["HTTP 503", "HTTP 500", ""]
    assert [a["attempt"] for a in delivery.attempt_log] == [1, 2, 3]


def test_delivery_gives_up_after_the_maximum_attempts(pt004, advance, receiver_factory):
    receiver = receiver_factory(statuses=[500])
    endpoint_for(pt004, receiver)
    open_gate(pt004, advance)
    assert len(receiver.requests) == 4
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 4
    assert delivery.last_status_code == 500 and delivery.last_error == "HTTP 500"
    assert webhook_attempt(delivery.id) is None and len(receiver.requests) == 4


def test_a_slow_receiver_times_out_and_a_redirect_is_not_followed(pt004, advance, settings,
                                                                  receiver_factory):
    settings.FCORE_WEBHOOK_TIMEOUT_S = 0.2
    settings.FCORE_WEBHOOK_MAX_ATTEMPTS = 1
    slow = receiver_factory(delay=1.0)
    endpoint_for(pt004, slow)
    open_gate(pt004, advance)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code is None and "Timeout" in delivery.last_error
    WebhookEndpoint.objects.all().delete()
    redirecting = receiver_factory(statuses=[302])
    endpoint_for(pt004, redirecting)
    open_gate(pt004, advance)
    assert redirecting.requests and WebhookDelivery.objects.get(
        endpoint__url=redirecting.url).last_error == "HTTP 302"


def test_backoff_doubles_and_is_capped(settings):
    settings.FCORE_WEBHOOK_BACKOFF_S = 10
    settings.FCORE_WEBHOOK_BACKOFF_MAX_S = 60
    assert [backoff_s(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_an_attempt_waits_for_its_backoff_and_a_second_task_changes_nothing(
        pt004, settings, receiver_factory, django_capture_on_commit_callbacks):
    settings.FCORE_WEBHOOK_BACKOFF_S = 10
    receiver = receiver_factory(statuses=[500, 200])
    endpoint_for(pt004, receiver)
    with django_capture_on_commit_callbacks(execute=False):  # the tasks are "lost"
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            actor="user:olivia", input={"amount": 1})
        from runs.engine import run_advance

        run_advance(run.run_id)
        run_request_gate(tenant=pt004, run_id=run.run_id, actor="client:x", reason="look")
    delivery = WebhookDelivery.objects.get()
    assert webhook_attempt(delivery.id) == 10  # failed: try again in 10 s
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=8)
    assert webhook_attempt(delivery.id) is None  # not due yet: a duplicate task does nothing
    assert len(receiver.requests) == 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert webhook_attempt(delivery.id) is None  # delivered
    assert webhook_attempt(delivery.id) is None  # and never again
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and len(receiver.requests) == 2


def test_the_sweep_redelivers_what_a_lost_task_left(pt004, receiver_factory,
                                                    django_capture_on_commit_callbacks):
    receiver = receiver_factory()
    endpoint_for(pt004, receiver)
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            actor="user:olivia", input={"amount": 1})
        from runs.engine import run_advance

        run_advance(run.run_id)
        run_request_gate(tenant=pt004, run_id=run.run_id, actor="client:x", reason="look")
    delivery = WebhookDelivery.objects.get()
    assert webhooks_due() == []  # not overdue yet
    assert webhooks_due(now=timezone.now() + timedelta(minutes=2)) == [delivery.id]
    # a worker that claimed it and died: released once its claim ran out
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING, next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert sweep() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and len(receiver.requests) == 1


# --- the allow-list ------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["https://example.com/hook", "ftp://127.0.0.1/x", "not a url",
                                 "http://user:pw@127.0.0.1/x", "http://10.0.0.1/x"])
def test_only_allowed_hosts_may_receive_webhooks(pt004, url):
    with pytest.raises(BadRequest) as info:
        webhook_endpoint_create(tenant=pt004, name="x", url=url, actor="user:admin")
    assert "url" in info.value.context["errors"]


def test_bad_event_names_are_refused(pt004):
    with pytest.raises(BadRequest) as info:
        webhook_endpoint_create(tenant=pt004, name="x", url="http://127.0.0.1:9/x",
                                events=["gate.exploded"], actor="user:admin")
    assert "events" in info.value.context["errors"]


def test_a_host_taken_off_the_allow_list_is_not_called(pt004, advance, settings,
                                                       receiver_factory):
    receiver = receiver_factory()
    endpoint_for(pt004, receiver)
    settings.FCORE_WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    open_gate(pt004, advance)
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert delivery.last_error.startswith("refused: host '127.0.0.1'")


# --- admin ---------------------------------------------------------------------------------

@pytest.fixture
def admin_client(db):
    user = get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_admin_shows_the_secret_once_and_the_delivery_log_read_only(pt004, advance, admin_client,
                                                                   receiver_factory):
    receiver = receiver_factory(statuses=[500, 200])
    response = admin_client.post("/admin/gates/webhookendpoint/add/", {
        "tenant": pt004.id, "name": "pager", "url": receiver.url,
        "events": json.dumps(["gate.opened"]), "active": "on"})
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(name="pager")
    secret = webhook_endpoint_secret(endpoint)
    assert secret in response.content.decode()
    change = admin_client.get(f"/admin/gates/webhookendpoint/{endpoint.pk}/change/")
    assert change.status_code == 200 and secret not in change.content.decode()
    refused = admin_client.post("/admin/gates/webhookendpoint/add/", {
        "tenant": pt004.id, "name": "evil", "url": "https://example.com/x",
        "events": json.dumps(["gate.opened"]), "active": "on"})
    assert "FCORE_WEBHOOK_ALLOWED_HOSTS" in refused.content.decode()
    assert not WebhookEndpoint.objects.filter(name="evil").exists()

    open_gate(pt004, advance)
    delivery = WebhookDelivery.objects.get()
    log = admin_client.get("/admin/gates/webhookdelivery/")
    assert log.status_code == 200 and "gate.opened" in log.content.decode()
    detail = admin_client.get(f"/admin/gates/webhookdelivery/{delivery.pk}/change/")
    body = detail.content.decode()
    assert detail.status_code == 200 and "HTTP 500" in body and str(delivery.delivery_id) in body
    assert admin_client.get("/admin/gates/webhookdelivery/add/").status_code == 403
    admin_client.post(f"/admin/gates/webhookdelivery/{delivery.pk}/change/", {"status": "x"})
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
