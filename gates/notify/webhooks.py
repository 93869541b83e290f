"""Signed webhooks: the outbox rows, signing, and one delivery attempt. Endpoints (what one
may be, and the audited services that change them) are in `gates.webhook_endpoints`.

Every delivery is a POST of the JSON payload (RFC 8785 bytes), signed as the Standard
Webhooks specification (1.0) defines, by its reference library `standardwebhooks`:

    Content-Type: application/json
    webhook-id: <the delivery's uuid, the same on every attempt: receivers deduplicate on it>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>

where the key is the base64-decoded part of the endpoint's `whsec_…` secret
(`webhook_secret_key`). The id, the timestamp and the body are all signed. Receivers verify
with any Standard Webhooks library (`standardwebhooks.Webhook(secret).verify(body,
headers)`), which also rejects timestamps more than five minutes from its clock.

Deprecated, kept for one release (0.2) and then removed: the headers of FC's own scheme,

    X-FC-Event: gate.opened | gate.escalated | gate.resolved | run.completed | …
    X-FC-Delivery: <the same uuid as webhook-id>
    X-FC-Timestamp: <the same as webhook-timestamp>
    X-FC-Signature: v1=<hex HMAC-SHA256(secret's UTF-8 bytes, f"{timestamp}.{body}")>

(`webhook_signature_verify` checks them). Only hosts in `FCORE_WEBHOOK_ALLOWED_HOSTS` are
called, redirects are not followed, and any answer but 2xx is a failed attempt, retried
with exponential backoff up to `FCORE_WEBHOOK_MAX_ATTEMPTS`. Every attempt is logged on the
`WebhookDelivery` row (admin shows it).
"""

import hashlib
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from audit.hashing import canonical
from fcore.rows import Rows

from ..models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from ..webhook_endpoints import (
    webhook_endpoint_secret,
    webhook_secret_key,
    webhook_url_problem,
)

log = logging.getLogger("fcore.webhooks")

SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300
CLAIM_SLACK_S = 30  # a claimed (sending) delivery is free again after timeout + this


# --- signing -------------------------------------------------------------------------------

def webhook_standard_signature(*, secret: str, msg_id: str, timestamp: int,
                               body: bytes) -> str:
    """The `webhook-signature` value (Standard Webhooks `v1,<base64>`), made by the
    `standardwebhooks` library with the secret's key."""
    return Webhook(webhook_secret_key(secret)).sign(
        msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode("utf-8"))


def webhook_headers(*, secret: str, msg_id: str, event: str, timestamp: int,
                    body: bytes) -> dict[str, str]:
    """Every header of one attempt: the Standard Webhooks ones and the deprecated `X-FC-*`."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "FederationCore-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_standard_signature(
            secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
        # deprecated (FC's own scheme), removed after 0.2
        "X-FC-Event": event,
        "X-FC-Delivery": msg_id,
        "X-FC-Timestamp": str(timestamp),
        "X-FC-Signature": webhook_signature(secret, timestamp, body),
    }


def webhook_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The deprecated `X-FC-Signature` value: `v1=` + hex HMAC-SHA256(secret's UTF-8 bytes,
    "<timestamp>.<body>")."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def webhook_signature_verify(*, secret: str, body: bytes, timestamp: str, signature: str,
                             now: float | None = None, tolerance: int = TOLERANCE_S) -> bool:
    """What a receiver of the deprecated `X-FC-*` headers does: the timestamp is recent and
    the signature matches the body."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - sent) > tolerance:
        return False
    expected = webhook_signature(secret, sent, body)
    return hmac.compare_digest(expected.encode(), (signature or "").encode())


# --- outbox -------------------------------------------------------------------------------

# A tenant's active endpoints: read at every gate event, every external step's start and
# every seal, most often to find there is none (`fcore.rows`).
ACTIVE_ENDPOINTS = Rows(WebhookEndpoint, """
    SELECT {columns} FROM gates_webhookendpoint e
     WHERE e.tenant_id = %s AND e.active ORDER BY e.name, e.id""", alias="e")


def webhook_deliveries_create(*, event: str, payload: dict, gate=None,
                              tenant_id: int | None = None) -> list[int]:
    """One pending delivery per active endpoint of the tenant (`gate`'s, or `tenant_id`
    for an event of no gate) that takes `event`. Runs in the transaction of the change."""
    now = timezone.now()
    ids = []
    tenant_id = gate.tenant_id if tenant_id is None else tenant_id
    for endpoint in ACTIVE_ENDPOINTS.fetch([tenant_id]):
        if event not in (endpoint.events or []):
            continue
        delivery_id = uuid.uuid4()
        delivery = WebhookDelivery.objects.create(
            delivery_id=delivery_id, endpoint=endpoint, gate=gate, event=event,
            payload={**payload, "id": str(delivery_id)}, next_attempt_at=now)
        ids.append(delivery.id)
    return ids


def backoff_s(attempt: int) -> int:
    """Seconds to wait after failed attempt `attempt` (1-based): doubling, capped."""
    base = settings.FCORE_WEBHOOK_BACKOFF_S
    return int(min(base * 2 ** max(attempt - 1, 0), settings.FCORE_WEBHOOK_BACKOFF_MAX_S))


# --- one attempt ----------------------------------------------------------------------------

def _claim(delivery_id: int, now) -> bool:
    """Compare-and-set pending → sending, only when the delivery is due: a task delivered
    twice, or early, finds nothing to do."""
    lease = now + timedelta(seconds=settings.FCORE_WEBHOOK_TIMEOUT_S + CLAIM_SLACK_S)
    return bool(WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now,
    ).update(status=DeliveryStatus.SENDING, next_attempt_at=lease))


def _post(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> tuple[int | None, str]:
    problem = webhook_url_problem(endpoint.url)
    if problem:
        return None, f"refused: {problem}"
    body = canonical(delivery.payload)
    headers = webhook_headers(secret=webhook_endpoint_secret(endpoint),
                              msg_id=str(delivery.delivery_id), event=delivery.event,
                              timestamp=int(time.time()), body=body)
    try:
        response = httpx.post(endpoint.url, content=body, headers=headers,
                              timeout=settings.FCORE_WEBHOOK_TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}"


def webhook_attempt(delivery_id: int) -> int | None:
    """Make one attempt at a due delivery and log it. Returns the seconds to wait before
    the next attempt, or None when there is nothing more to do (delivered, given up, not
    due, or claimed by another worker)."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    started = time.monotonic()
    if endpoint.active:
        status_code, error = _post(endpoint, delivery)
    else:
        status_code, error = None, "refused: endpoint inactive"
    ended = timezone.now()
    attempt = delivery.attempts + 1
    entry = {"attempt": attempt, "at": ended.isoformat(), "status_code": status_code,
             "error": error, "duration_ms": int((time.monotonic() - started) * 1000)}
    final = not error or error.startswith("refused:")
    wait = None
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        delivery.attempts = attempt
        delivery.attempt_log = [*delivery.attempt_log, entry]
        delivery.last_status_code = status_code
        delivery.last_error = error
        if not error:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, ended
        elif final or attempt >= settings.FCORE_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
        else:
            wait = backoff_s(attempt)
            delivery.status = DeliveryStatus.PENDING
            delivery.next_attempt_at = ended + timedelta(seconds=wait)
        delivery.save()
    log.info("webhook %s %s attempt %s → %s %s", delivery.delivery_id, endpoint.url, attempt,
             status_code, error or "delivered")
    return wait


def webhooks_due(*, now=None) -> list[int]:
    """Deliveries a lost task left behind: pending and overdue, or claimed by a worker
    whose claim ran out (it is released to pending first)."""
    now = now or timezone.now()
    overdue = now - timedelta(seconds=CLAIM_SLACK_S)
    WebhookDelivery.objects.filter(status=DeliveryStatus.SENDING,
                                   next_attempt_at__lte=now).update(
        status=DeliveryStatus.PENDING, next_attempt_at=overdue)
    return list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING,
                                               next_attempt_at__lte=overdue)
                .values_list("id", flat=True)[:500])
