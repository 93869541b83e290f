"""Audit streams and their events: per-stream hash chains.

Invariants:
- An event is never updated or deleted: the model refuses it, and the database refuses it
  through triggers installed by migration 0002 (PostgreSQL and SQLite).
- `AuditStream` is the head of its chain (`head_seq`, `head_hash`); an append locks that
  row, so appends to one stream are serialised and different streams never wait on each
  other.
- `at` is stored as the exact string that was hashed and that the API returns.
"""

from django.db import models

from .messages import event_message


class ImmutableEventError(Exception):
    """Raised when code tries to change or delete an audit event."""


class AuditStream(models.Model):
    """One hash chain: `run/<run_id>` or `tenant/<slug>/admin`."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200, unique=True)
    head_seq = models.PositiveBigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, default="0" * 64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "updated_at"])]

    def __str__(self) -> str:
        return self.name


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableEventError("audit events are immutable")

    def delete(self):
        raise ImmutableEventError("audit events are immutable")


class AuditEvent(models.Model):
    """One link of a chain. Append-only."""

    stream = models.ForeignKey(AuditStream, on_delete=models.PROTECT, related_name="events")
    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField()
    code = models.CharField(max_length=16)
    actor = models.CharField(max_length=200)
    at = models.CharField(max_length=32)
    occurred_at = models.DateTimeField(db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["stream_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="uniq_stream_seq"),
        ]
        indexes = [
            models.Index(fields=["tenant", "code"]),
            models.Index(fields=["tenant", "actor"]),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}#{self.seq} {self.code}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableEventError("audit events are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEventError("audit events are immutable")

    @property
    def message(self) -> str:
        return event_message(self.code, self.data)
