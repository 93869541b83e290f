"""Appending to audit streams. Every state change in FC calls `audit_append` inside the
transaction that makes the change, so the event and the change commit or roll back together.

Lock order across the project: run → gate → audit stream head. `audit_append` takes the
stream head last, holds it to the end of the caller's transaction, and never waits on
another stream.
"""

import threading
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.utils import timezone

from fcore.metrics import AUDIT_EVENTS, count_on_commit
from fcore.wakeups import stream_moved

from .hashing import GENESIS_HASH, event_hash, format_at
from .models import AuditEvent, AuditStream


def run_stream_name(run_id) -> str:
    return f"run/{run_id}"


def admin_stream_name(tenant_slug: str) -> str:
    return f"tenant/{tenant_slug}/admin"


def _locked_stream(*, tenant_id: int, stream: str) -> AuditStream:
    found = AuditStream.objects.select_for_update().filter(name=stream).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return AuditStream.objects.create(tenant_id=tenant_id, name=stream)
    except IntegrityError:  # created concurrently: wait for the winner's lock
        return AuditStream.objects.select_for_update().get(name=stream)


class Appended(NamedTuple):
    """An event appended by `audit_append`, final (seq and hash) but maybe not written yet:
    the columns of its `AuditEvent` row."""

    stream_id: int
    tenant_id: int
    seq: int
    code: str
    actor: str
    at: str
    occurred_at: datetime
    data: dict
    prev_hash: str
    hash: str


class StreamWriter:
    """Appends to one stream inside the caller's transaction, in one go: the head row is
    locked at the first append, the events are inserted together and the head updated once
    at `flush()`. Each event's seq and hash are final as soon as it is appended."""

    def __init__(self, *, tenant_id: int, stream: str, row: AuditStream | None = None):
        self.tenant_id, self.stream = tenant_id, stream
        self.row: AuditStream | None = None
        self.pending: list[Appended] = []
        # The head row, already locked by the caller (the run lock locks its run's).
        self.read_row = row

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the head, counting the events not flushed yet."""
        if self.pending:
            return self.pending[-1].seq, self.pending[-1].hash
        if self.row is None:
            return audit_stream_head(self.stream, _direct=True)
        return self.row.head_seq, (self.row.head_hash if self.row.head_seq else GENESIS_HASH)

    def append(self, *, code: str, actor: str, data: dict) -> Appended:
        code = str(code)  # a `Code` member is stored and hashed as its plain string
        if self.row is None:
            self.row = self.read_row or _locked_stream(tenant_id=self.tenant_id,
                                                       stream=self.stream)
            if self.row.tenant_id != self.tenant_id:
                raise ValueError(f"stream {self.stream} belongs to another tenant")
        head_seq, head_hash = self.head()
        moment = timezone.now()
        at = format_at(moment)
        seq = head_seq + 1
        prev_hash = head_hash if head_seq else GENESIS_HASH
        digest = event_hash(prev_hash=prev_hash, stream=self.stream, seq=seq, code=code,
                            actor=actor, at=at, data=data)
        event = Appended(stream_id=self.row.id, tenant_id=self.tenant_id, seq=seq,
                         code=code, actor=actor, at=at, occurred_at=moment, data=data,
                         prev_hash=prev_hash, hash=digest)
        self.pending.append(event)
        return event

    def take(self) -> list[Appended]:
        """The events appended since the last take, for a caller that writes them itself
        (the run lock, `runs.engine.sql`); the head row is moved to the last, in memory."""
        events, self.pending = self.pending, []
        if events:
            count_on_commit(AUDIT_EVENTS, amount=len(events))
            self.row.head_seq, self.row.head_hash = events[-1].seq, events[-1].hash
            stream_moved(self.stream, events[-1].seq)  # its waiters, once this commits
        return events

    def flush(self) -> None:
        """Insert the events appended since the last flush and move the head row to the
        last; `unsealed` is always written, so a checkpoint sees the stream changed."""
        events = self.take()
        if not events:
            return
        AuditEvent.objects.bulk_create(AuditEvent(**e._asdict()) for e in events)
        AuditStream.objects.filter(pk=self.row.pk).update(
            head_seq=self.row.head_seq, head_hash=self.row.head_hash,
            updated_at=timezone.now(), unsealed=True)


_open = threading.local()


def _open_writers() -> dict:
    if not hasattr(_open, "writers"):
        _open.writers = {}
    return _open.writers


@contextmanager
def stream_writer(*, tenant_id: int, stream: str, row: AuditStream | None = None,
                  flush: bool = True):
    """Within the block every `audit_append` to `stream` goes through one StreamWriter,
    flushed when the block ends without an error (the caller's transaction then commits
    or rolls back the events with the change); with `flush=False` the caller takes the
    events (`StreamWriter.take`) and writes them itself. Nested blocks share the outer
    writer. `row`: the stream's head row, already locked by the caller."""
    writers = _open_writers()
    if stream in writers:
        yield writers[stream]
        return
    writer = writers[stream] = StreamWriter(tenant_id=tenant_id, stream=stream, row=row)
    try:
        yield writer
        if flush:
            writer.flush()
    finally:
        del writers[stream]


def audit_append(*, tenant_id: int, stream: str, code: str, actor: str, data: dict) -> Appended:
    """Append one event to `stream`; must run inside the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_append must run inside the transaction of the change")
    writer = _open_writers().get(stream)
    if writer is not None:
        if writer.tenant_id != tenant_id:
            raise ValueError(f"stream {stream} belongs to another tenant")
        return writer.append(code=code, actor=actor, data=data)
    writer = StreamWriter(tenant_id=tenant_id, stream=stream)
    event = writer.append(code=code, actor=actor, data=data)
    writer.flush()
    return event


def audit_stream_head(stream: str, *, _direct: bool = False) -> tuple[int, str]:
    """(seq, hash) of a stream's head, including events appended in this transaction;
    (0, 64 zeros) for a stream with no event."""
    writer = None if _direct else _open_writers().get(stream)
    if writer is not None:
        return writer.head()
    row = AuditStream.objects.filter(name=stream).values_list("head_seq", "head_hash").first()
    return row if row else (0, GENESIS_HASH)
