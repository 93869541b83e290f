"""Notifications through a real Celery worker: the gate opens in the worker, which signs
and POSTs the webhook, retries it after its backoff, and sends the email."""

import json
import time
from datetime import datetime

import pytest
from standardwebhooks import Webhook

from fcore.members import member_set
from fcore.models import Tenant
from gates.models import DeliveryStatus, EmailNotification, WebhookDelivery
from gates.webhook_endpoints import webhook_endpoint_create
from runs.services import run_create
from tests.api.test_worker_e2e import credentials, worker  # noqa: F401  (fixtures)

from .webhook_receiver import Receiver, receiver_verify

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_worker_delivers_signed_webhooks_with_backoff_and_sends_email(worker,  # noqa: F811
                                                                        credentials):  # noqa: F811
    tenant = Tenant.objects.get(slug="tenant_omega")
    member_set(tenant=tenant, username="adam", groups=["approvers"], email="adam@example.invalid")
    receiver = Receiver(statuses=[500, 200])
    try:
        _, secret = webhook_endpoint_create(tenant=tenant, name="ops", url=receiver.url,
                                            events=["gate.opened"], actor="user:admin")
        run_create(tenant=tenant, workflow="vendor_payment", actor="user:olivia",
                   input={"amount": 1200, "vendor": "v-1"})
        delivered = wait_for(lambda: WebhookDelivery.objects.filter(
            status=DeliveryStatus.DELIVERED).exists())
        assert delivered, worker.log_path.read_text()[-3000:]
        delivery = WebhookDelivery.objects.get()
        assert [a["status_code"] for a in delivery.attempt_log] == [500, 200]
        first, second = (datetime.fromisoformat(a["at"]) for a in delivery.attempt_log)
        assert (second - first).total_seconds() >= 9  # the 10 s backoff, through Celery
        assert len(receiver.requests) == 2
        assert all(receiver_verify(secret, h, b) for _, h, b in receiver.requests)
        for _, headers, body in receiver.requests:  # Standard Webhooks, from the worker too
            assert Webhook(secret).verify(body, headers)["id"] == str(delivery.delivery_id)
        assert json.loads(receiver.requests[0][2])["event"] == "gate.opened"
        assert wait_for(lambda: EmailNotification.objects.filter(
            status=DeliveryStatus.DELIVERED).exists(), timeout=20)
        assert "Approval needed: vendor_payment, step sign_off" in worker.log_path.read_text()
    finally:
        receiver.close()
