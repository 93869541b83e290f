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
    """One hash chain: `run/<run_id>` or `tenant/<slug>/admin`.

    Its head row is updated by every append, so it keeps no index on a column that changes
    (`updated_at`, `head_*`): PostgreSQL then updates it in place (HOT), without new index
    entries. The name is unique through a constraint, without the LIKE index that a unique
    field brings on PostgreSQL (streams are found by exact name).

    `unsealed`: the stream may hold events that no checkpoint covers yet. Every append sets
    it (to the value it almost always has already, which keeps the update HOT); a checkpoint
    clears it for the heads it sealed, only where the head has not moved since. The partial
    index over unsealed streams lets a checkpoint find what changed without reading every
    stream of the tenant (`audit.checkpoints`)."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    head_seq = models.PositiveBigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, default="0" * 64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    unsealed = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name"], name="uniq_stream_name")]
        indexes = [models.Index(fields=["tenant"], condition=models.Q(unsealed=True),
                                name="stream_unsealed")]

    def __str__(self) -> str:
        return self.name


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableEventError("audit events are immutable")

    def delete(self):
        raise ImmutableEventError("audit events are immutable")


class AuditEvent(models.Model):
    """One link of a chain. Append-only."""

    # Indexes: every write of the engine inserts events, so no index is kept that another
    # one already covers (stream by (stream, seq), tenant by (tenant, code)), nor one that
    # no query reads: `hash` is not unique-indexed, since (stream, seq) is unique and each
    # hash covers its stream and seq (audit_verify checks every link).
    stream = models.ForeignKey(AuditStream, on_delete=models.PROTECT, related_name="events",
                               db_index=False)
    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+",
                               db_index=False)
    seq = models.PositiveBigIntegerField()
    code = models.CharField(max_length=16)
    actor = models.CharField(max_length=200)
    at = models.CharField(max_length=32)
    occurred_at = models.DateTimeField(db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

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


class SigningKey(models.Model):
    """The public half of a checkpoint signing key. The private key is read from settings
    or a file and never enters the database; retired keys stay so old checkpoints verify."""

    key_id = models.CharField(max_length=16, unique=True)
    public_key = models.CharField(max_length=64)  # standard base64 of the raw 32 bytes
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.key_id


class Checkpoint(models.Model):
    """A signed Merkle root over the heads of a tenant's streams that changed since the
    previous checkpoint, which it links to by hash. Append-only (the model refuses
    changes; a rewrite by a database superuser is what `audit_verify` exposes)."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    tenant_slug = models.CharField(max_length=64)
    seq = models.PositiveBigIntegerField()
    prev_hash = models.CharField(max_length=64)
    root = models.CharField(max_length=64)
    tree_size = models.PositiveIntegerField()
    heads = models.JSONField()  # [{stream, seq, hash}] sorted by stream
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)  # base64 Ed25519 over JCS(body)
    at = models.CharField(max_length=32)
    hash = models.CharField(max_length=64, unique=True)
    # The tenant's append-only log after this checkpoint appended its heads (`LogLeaf`):
    # its size, root (hex) and the C2SP signed note of that tree (`audit.note`). Null and
    # empty for checkpoints sealed before the log existed whose note was never signed.
    log_size = models.PositiveBigIntegerField(null=True, blank=True)
    log_root = models.CharField(max_length=64, blank=True)
    log_frontier = models.JSONField(default=list, blank=True)  # audit.merkle_log, hex
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["tenant", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "seq"], name="uniq_checkpoint_seq"),
        ]

    def __str__(self) -> str:
        return f"checkpoint {self.tenant_slug}#{self.seq}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableEventError("checkpoints are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEventError("checkpoints are immutable")


class LogLeaf(models.Model):
    """One leaf of a tenant's append-only Merkle log: a stream head `{stream, seq, hash}`
    that checkpoint `checkpoint` sealed, at position `index` (0, 1, 2, … per tenant, in
    the order sealed). Leaves are only ever added; `leaf_hash` is its RFC 6962 leaf hash
    (hex), kept so proofs are computed without re-hashing."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+",
                               db_index=False)
    index = models.PositiveBigIntegerField()
    stream = models.CharField(max_length=200)
    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    leaf_hash = models.CharField(max_length=64)
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["tenant", "index"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "index"], name="uniq_log_leaf_index"),
        ]

    def __str__(self) -> str:
        return f"leaf {self.index} {self.stream}@{self.seq}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableEventError("log leaves are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEventError("log leaves are immutable")


class CheckpointCursor(models.Model):
    """Per stream, the head last put under a checkpoint: which streams changed since.

    Keyed by stream name (no foreign key), so it never blocks anything. `seen_seq` is the
    head at which the stream counts as unchanged: `seq` for a run stream; for the admin
    stream, the `FC-AUD-001` event that recorded the checkpoint (so sealing alone does not
    make the next checkpoint necessary).
    """

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    stream = models.CharField(max_length=200, unique=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)
    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    seen_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.stream}@{self.seq}"


class VerificationStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # the walk finished: `report` says whether the chains verify
    FAILED = "failed"  # the walk itself could not finish: `error` says why


class AuditVerification(models.Model):
    """One background verification of a tenant's chains and checkpoints (`audit_verify`).

    Requested by `POST /workflows/audit/verify`, run by the Celery task
    `audit.tasks.verify_tenant`, which claims it (pending → running) and records the report
    (`ChainReport.as_dict()`) or the error (`audit.verifications`)."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=VerificationStatus.choices,
                              default=VerificationStatus.PENDING)
    requested_by = models.CharField(max_length=200)
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-requested_at"],
                                name="audit_verif_tenant_recent")]

    def __str__(self) -> str:
        return f"verification {self.pk} of tenant {self.tenant_id} ({self.status})"
