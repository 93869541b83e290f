"""A tenant's append-only Merkle log and its signed checkpoints (C2SP), over `LogLeaf`.

Every checkpoint appends the heads it sealed (sorted by stream name) as new leaves, after
all the leaves of the earlier checkpoints: the tree only grows, and a checkpoint of size m
is a prefix of every later one (`audit.merkle_log` proves it). `log_extend` runs inside
`checkpoint_seal`'s transaction, under the tenant's admin stream lock, so two seals of
one tenant never append at once. It carries the frontier from checkpoint to checkpoint,
so sealing costs O(heads · log n), not a read of the whole log.

The log's origin (its C2SP name, also the key name of its signatures) is
`<FCORE_LOG_ORIGIN>/<tenant slug>`.
"""

from django.conf import settings

from . import merkle, merkle_log, note
from .models import Checkpoint, LogLeaf

DEFAULT_ORIGIN = "fcore.invalid/audit"


def log_origin(tenant_slug: str) -> str:
    """The origin line of the tenant's checkpoints (and the key name signing them)."""
    base = getattr(settings, "FCORE_LOG_ORIGIN", "") or DEFAULT_ORIGIN
    return f"{base.rstrip('/')}/{tenant_slug}"


def log_extend(*, tenant_id: int, previous: Checkpoint | None,
               heads: list[dict]) -> tuple[int, bytes, list[bytes], list[LogLeaf]]:
    """(size, root, frontier, unsaved leaves) of the log after appending `heads`."""
    size = previous.log_size if previous is not None and previous.log_size else 0
    frontier = [bytes.fromhex(h) for h in previous.log_frontier] if size else []
    rows = []
    for head in heads:
        digest = merkle.leaf_hash(head)
        frontier = merkle_log.frontier_append(frontier, size, digest)
        rows.append(LogLeaf(tenant_id=tenant_id, index=size, stream=head["stream"],
                            seq=head["seq"], hash=head["hash"], leaf_hash=digest.hex()))
        size += 1
    return size, merkle_log.frontier_root(frontier), frontier, rows


def log_note(*, tenant_slug: str, size: int, root: bytes, private) -> str:
    """The signed note of the tenant's tree of `size` leaves."""
    origin = log_origin(tenant_slug)
    return note.note_sign(note.checkpoint_text(origin, size, root), origin, private)


def log_size(tenant_id: int) -> int:
    """The size of the tenant's latest signed tree (0 before the first note)."""
    latest = log_checkpoint(tenant_id)
    return latest.log_size if latest else 0


def log_checkpoint(tenant_id: int, size: int | None = None) -> Checkpoint | None:
    """The tenant's latest checkpoint with a signed note, or the one of tree size `size`."""
    rows = Checkpoint.objects.filter(tenant_id=tenant_id).exclude(note="")
    if size is not None:
        return rows.filter(log_size=size).order_by("-seq").first()
    return rows.order_by("-seq").first()


def log_leaf_hashes(tenant_id: int, size: int) -> list[bytes]:
    """The first `size` leaf hashes of the tenant's log."""
    rows = (LogLeaf.objects.filter(tenant_id=tenant_id, index__lt=size).order_by("index")
            .values_list("leaf_hash", flat=True))
    return [bytes.fromhex(h) for h in rows.iterator(chunk_size=2000)]


def log_consistency(tenant_id: int, first: int, second: int) -> list[bytes]:
    """The consistency proof between two sizes of the signed log (`ProofRangeError`)."""
    limit = log_size(tenant_id)
    if not 1 <= first <= second <= limit:
        raise merkle_log.ProofRangeError(
            f"from and to must satisfy 1 <= from <= to <= {limit} (the latest tree size)")
    return merkle_log.consistency_proof(log_leaf_hashes(tenant_id, second), first, second)


def log_inclusion(tenant_id: int, index: int, size: int) -> tuple[LogLeaf, list[bytes]]:
    """The leaf at `index` and its inclusion proof in the tree of `size` leaves."""
    limit = log_size(tenant_id)
    if not 0 <= index < size <= limit:
        raise merkle_log.ProofRangeError(
            f"index and size must satisfy 0 <= index < size <= {limit} (the latest tree size)")
    leaf = LogLeaf.objects.get(tenant_id=tenant_id, index=index)
    return leaf, merkle_log.inclusion_proof(log_leaf_hashes(tenant_id, size), index, size)


def log_leaf_of(tenant_id: int, checkpoint: Checkpoint, stream: str) -> LogLeaf | None:
    """The leaf `checkpoint` appended for `stream` (None for a checkpoint before the log)."""
    return LogLeaf.objects.filter(tenant_id=tenant_id, checkpoint=checkpoint,
                                  stream=stream).first()
