"""Standard Webhooks (issue 22 item 4): real deliveries, captured by an HTTP receiver on
127.0.0.1, verify with the `standardwebhooks` reference library — and fail to when the
body, the id, the timestamp or the secret is not the one signed. Legacy secrets keep
working, and the deprecated `X-FC-*` headers are still sent."""

import base64
import binascii
import hashlib
import hmac
import secrets

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from fcore.secret_box import secret_seal
from gates.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from gates.notify.webhooks import webhook_standard_signature
from gates.webhook_endpoints import (
    webhook_endpoint_secret,
    webhook_secret_is_standard,
    webhook_secret_key,
    webhook_secret_new,
)

from .webhook_receiver import endpoint_for, open_gate, receiver_verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quick_retries")]


def lower(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def one_delivery(tenant, advance, receiver_factory) -> tuple[str, dict, bytes]:
    """Open a gate; the endpoint's secret and the one request its receiver got."""
    receiver = receiver_factory()
    _, secret = endpoint_for(tenant, receiver)
    open_gate(tenant, advance)
    (_, headers, body), = receiver.requests
    return secret, headers, body


def test_a_real_delivery_verifies_with_the_standardwebhooks_library(pt004, advance,
                                                                    receiver_factory):
    secret, headers, body = one_delivery(pt004, advance, receiver_factory)
    payload = Webhook(secret).verify(body, headers)
    assert payload["event"] == "gate.opened"
    got = lower(headers)
    delivery = WebhookDelivery.objects.get()
    # the signed id is the delivery's id, the one in the body and in X-FC-Delivery
    assert got["webhook-id"] == str(delivery.delivery_id) == payload["id"]
    assert got["webhook-signature"].startswith("v1,")
    assert got["webhook-timestamp"].isdigit()
    # the deprecated headers are still there, and still verify as before
    assert got["x-fc-delivery"] == got["webhook-id"]
    assert got["x-fc-timestamp"] == got["webhook-timestamp"]
    assert got["x-fc-event"] == "gate.opened"
    assert receiver_verify(secret, headers, body)


def test_a_tampered_body_a_wrong_id_time_or_secret_fails_verification(pt004, advance,
                                                                      receiver_factory):
    secret, headers, body = one_delivery(pt004, advance, receiver_factory)
    hook = Webhook(secret)
    hook.verify(body, headers)  # the untouched delivery verifies
    got = lower(headers)
    forged = [
        (body.replace(b'"open"', b'"approved"'), got),
        (body + b" ", got),
        (body, {**got, "webhook-id": "5c0e0000-0000-4000-8000-000000000000"}),
        (body, {**got, "webhook-timestamp": str(int(got["webhook-timestamp"]) - 1)}),
        (body, {k: v for k, v in got.items() if k != "webhook-signature"}),
    ]
    for forged_body, forged_headers in forged:
        assert forged_body != body or forged_headers != got
        with pytest.raises(WebhookVerificationError):
            hook.verify(forged_body, forged_headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_secret_new()).verify(body, headers)


def test_every_retry_carries_the_same_signed_id(pt004, advance, receiver_factory):
    receiver = receiver_factory(statuses=(500, 503, 200))
    _, secret = endpoint_for(pt004, receiver)
    open_gate(pt004, advance)
    assert len(receiver.requests) == 3
    ids = {lower(h)["webhook-id"] for _, h, _ in receiver.requests}
    assert ids == {str(WebhookDelivery.objects.get().delivery_id)}
    for _, headers, body in receiver.requests:
        Webhook(secret).verify(body, headers)
    assert WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED


def test_new_secrets_are_whsec_and_standard_base64_of_32_random_bytes(pt004,
                                                                     receiver_factory):
    endpoint, secret = endpoint_for(pt004, receiver_factory())
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) == 32 and webhook_secret_key(secret) == key
    assert webhook_secret_is_standard(secret)
    assert webhook_endpoint_secret(WebhookEndpoint.objects.get(pk=endpoint.pk)) == secret
    assert len({webhook_secret_new() for _ in range(20)}) == 20


def test_the_signature_is_the_spec_one_computed_by_hand():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"a":1}'
    mac = hmac.new(b"k" * 32, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert webhook_standard_signature(secret=secret, msg_id="msg_1", timestamp=1700000000,
                                      body=body) == "v1," + base64.b64encode(mac).decode()


@pytest.mark.parametrize("secret", [
    "whsec_" + secrets.token_urlsafe(32),  # what FC issued before Standard Webhooks
    "whsec_abc",                           # too short a key to be a Standard one
    "not-whsec-at-all",
])
def test_a_legacy_secret_signs_with_its_own_bytes(secret):
    assert not webhook_secret_is_standard(secret)
    assert webhook_secret_key(secret) == secret.encode()


def test_a_legacy_secret_keeps_working_and_has_a_standard_form(pt004, advance,
                                                                 receiver_factory):
    receiver = receiver_factory()
    endpoint, _ = endpoint_for(pt004, receiver)
    legacy = "whsec_" + secrets.token_urlsafe(32)
    with pytest.raises(binascii.Error):
        base64.b64decode(legacy.removeprefix("whsec_"), validate=True)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_encrypted=secret_seal(legacy))
    open_gate(pt004, advance)
    (_, headers, body), = receiver.requests
    assert receiver_verify(legacy, headers, body)  # old receivers: nothing changes
    # a receiver moving to Standard Webhooks derives the standard form of what it holds
    standard_form = "whsec_" + base64.b64encode(legacy.encode()).decode()
    assert Webhook(standard_form).verify(body, headers)["event"] == "gate.opened"
    assert Webhook(legacy.encode()).verify(body, headers)["event"] == "gate.opened"
