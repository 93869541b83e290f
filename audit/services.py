"""Appending to audit streams. Every state change in FC calls `audit_append` inside the
transaction that makes the change, so the event and the change commit or roll back together.

Lock order across the project: run → gate → audit stream head. `audit_append` takes the
stream head last, holds it to the end of the caller's transaction, and never waits on
another stream.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from .hashing import GENESIS_HASH, event_hash, format_at
from .models import AuditEvent, AuditStream


def run_stream_name(run_id) -> str:
    return f"run/{run_id}"


def admin_stream_name(tenant_slug: str) -> str:
    return f"tenant/{tenant_slug}/admin"


def _locked_stream(*, tenant_id: int, stream: str) -> AuditStream:
    try:
        return AuditStream.objects.select_for_update().get(name=stream)
    except AuditStream.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            return AuditStream.objects.create(tenant_id=tenant_id, name=stream)
    except IntegrityError:  # created concurrently: wait for the winner's lock
        return AuditStream.objects.select_for_update().get(name=stream)


def audit_append(*, tenant_id: int, stream: str, code: str, actor: str, data: dict) -> AuditEvent:
    """Append one event to `stream`; must run inside the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_append must run inside the transaction of the change")
    head = _locked_stream(tenant_id=tenant_id, stream=stream)
    if head.tenant_id != tenant_id:
        raise ValueError(f"stream {stream} belongs to another tenant")
    moment = timezone.now()
    at = format_at(moment)
    seq = head.head_seq + 1
    prev_hash = head.head_hash if head.head_seq else GENESIS_HASH
    digest = event_hash(prev_hash=prev_hash, stream=stream, seq=seq, code=code, actor=actor,
                        at=at, data=data)
    event = AuditEvent.objects.create(
        stream=head, tenant_id=tenant_id, seq=seq, code=code, actor=actor, at=at,
        occurred_at=moment, data=data, prev_hash=prev_hash, hash=digest,
    )
    head.head_seq = seq
    head.head_hash = digest
    head.save(update_fields=["head_seq", "head_hash", "updated_at"])
    return event


def audit_stream_head(stream: str) -> tuple[int, str]:
    """(seq, hash) of a stream's head; (0, 64 zeros) for a stream with no event."""
    row = AuditStream.objects.filter(name=stream).values_list("head_seq", "head_hash").first()
    return row if row else (0, GENESIS_HASH)
