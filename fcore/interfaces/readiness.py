"""The figures `/readyz` judges and `/metrics` exports as gauges: each one bounded query.

- beat: the age of beat's heartbeat row (one row by its unique name);
- checkpoints: per tenant, the age of the oldest audit event no checkpoint covers yet.
  Only streams marked `unsealed` are read (their partial index), and per stream one
  unique-index look-up of its first event past its checkpoint cursor: the work follows
  what changed since the last checkpoint, not the size of the trail;
- backlog: webhook deliveries and emails not delivered yet (`pending`, `sending`) by their
  status index, how many are older than the threshold and the age of the oldest.
"""

from datetime import datetime, timedelta

from django.db.models import F, Min, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AuditEvent, AuditStream, CheckpointCursor
from fcore.heartbeats import heartbeat_at
from gates.models import DeliveryStatus, EmailNotification, WebhookDelivery

UNDELIVERED = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
BACKLOG_KINDS = {"webhook": WebhookDelivery, "email": EmailNotification}


def _age(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max((now - since).total_seconds(), 0.0)


def beat_age_s(now: datetime | None = None) -> float | None:
    """Seconds since beat's last heartbeat; None if it never ticked."""
    return _age(heartbeat_at(), now or timezone.now())


def checkpoint_lag_s(now: datetime | None = None) -> dict[int, float]:
    """{tenant id: age in seconds of its oldest audit event not under a checkpoint}, for
    the tenants that have such events."""
    now = now or timezone.now()
    seen = CheckpointCursor.objects.filter(stream=OuterRef("name")).values("seen_seq")[:1]
    first = AuditEvent.objects.filter(stream_id=OuterRef("pk"), seq=OuterRef("seen") + 1)
    rows = (AuditStream.objects.filter(unsealed=True)
            .annotate(seen=Coalesce(Subquery(seen), Value(0)))
            .filter(head_seq__gt=F("seen"))
            .annotate(since=Subquery(first.values("occurred_at")[:1]))
            .values("tenant_id").annotate(oldest=Min("since")).order_by()
            .values_list("tenant_id", "oldest"))
    return {tenant: _age(oldest, now) for tenant, oldest in rows if oldest is not None}


def backlog(max_age_s: float, now: datetime | None = None) -> dict[str, dict]:
    """Per kind: undelivered rows, how many are older than `max_age_s`, the oldest's age."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=max_age_s)
    figures = {}
    for kind, model in BACKLOG_KINDS.items():
        undelivered = model.objects.filter(status__in=UNDELIVERED)
        oldest = undelivered.aggregate(oldest=Min("created_at"))["oldest"]
        figures[kind] = {
            "undelivered": undelivered.count(),
            "overdue": (undelivered.filter(created_at__lt=cutoff).count()
                        if oldest is not None and oldest < cutoff else 0),
            "oldest_age_s": _age(oldest, now),
        }
    return figures
