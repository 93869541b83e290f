"""Checking the tenants' append-only logs in the database (part of `audit_verify`).

Per tenant: the leaves are numbered 0, 1, … without a gap; each checkpoint's leaves are
exactly its heads, in order, right after the previous checkpoint's; each leaf hash is
recomputed; each checkpoint's log root is the root of the leaves so far; each note is
signed by the checkpoint's key under the log's origin and states that size and root; no
checkpoint is dated after its key's `retired_at`. A checkpoint an auditor kept (a signed
note, `kept`) must be signed by a trusted key and the log must still extend it: the root
of its first `size` leaves is the root it signed. A rewrite that re-signs the whole
history passes every other check and fails this one.
"""

from . import merkle, merkle_log, note
from .hashing import format_at
from .log import log_origin
from .models import Checkpoint, LogLeaf, SigningKey


def _fail(label: str, problem: str) -> dict:
    return {"checkpoint": label, "problem": problem}


def retired_times() -> dict[str, str]:
    """{key id: retired_at as the checkpoints' `at` string} of the retired keys."""
    return {key_id: format_at(at) for key_id, at in SigningKey.objects.filter(
        retired_at__isnull=False).values_list("key_id", "retired_at")}


def _tenant_log(tenant_id: int, slug: str, keys: dict[str, bytes],
                retired: dict[str, str]) -> tuple[list[dict], list[bytes]]:
    failures, leaves, frontier = [], [], []
    by_checkpoint: dict[int, list] = {}
    for row in (LogLeaf.objects.filter(tenant_id=tenant_id).order_by("index")
                .values_list("index", "stream", "seq", "hash", "leaf_hash", "checkpoint_id")
                .iterator(chunk_size=2000)):
        if row[0] != len(leaves):
            failures.append(_fail(f"log {slug}", f"leaf {len(leaves)} is missing"))
            return failures, leaves
        leaves.append(bytes.fromhex(row[4]))
        by_checkpoint.setdefault(row[5], []).append(row)
    size, origin = 0, log_origin(slug)
    for cp in (Checkpoint.objects.filter(tenant_id=tenant_id).order_by("seq")
               .only("id", "seq", "heads", "log_size", "log_root", "note", "key_id", "at")):
        label = f"checkpoint {slug}#{cp.seq}"
        if cp.key_id in retired and cp.at > retired[cp.key_id]:
            failures.append(_fail(label, f"signed at {cp.at}, after key {cp.key_id} was "
                                         f"retired ({retired[cp.key_id]})"))
        if cp.log_size is None:
            continue
        rows = by_checkpoint.get(cp.id, [])
        heads = [(h.get("stream"), h.get("seq"), h.get("hash")) for h in cp.heads]
        if [r[0] for r in rows] != list(range(size, size + len(rows))) or \
                [r[1:4] for r in rows] != heads or cp.log_size != size + len(rows):
            failures.append(_fail(label, "its log leaves are not its heads, appended after "
                                         "the previous checkpoint's"))
            return failures, leaves
        for r in rows:
            digest = merkle.leaf_hash({"stream": r[1], "seq": r[2], "hash": r[3]})
            if digest.hex() != r[4]:
                failures.append(_fail(label, f"leaf {r[0]}: leaf_hash does not match it"))
            frontier = merkle_log.frontier_append(frontier, size, digest)
            size += 1
        root = merkle_log.frontier_root(frontier)
        if root.hex() != cp.log_root:
            failures.append(_fail(label, "log_root is not the root of the log's leaves"))
        if cp.note:
            problem = _note_problem(cp.note, origin, keys.get(cp.key_id), size, root)
            if problem:
                failures.append(_fail(label, problem))
    return failures, leaves


def _note_problem(text: str, origin: str, public: bytes | None, size: int,
                  root: bytes) -> str | None:
    if public is None:
        return "its note is signed by a key that is not trusted"
    try:
        body = note.note_verify(text, origin, public)
        stated = note.checkpoint_parse(body)
    except note.BadNote as exc:
        return f"note: {exc}"
    if stated != (origin, size, root):
        return "its note does not state the log's origin, size and root"
    return None


def kept_problem(text: str, slug_of_origin: dict[str, str], keys: dict[str, bytes],
                 leaves_of) -> tuple[str, str | None]:
    """(label, problem) for one kept checkpoint note; `leaves_of(slug)` gives the leaves."""
    try:
        origin, size, root = note.checkpoint_parse(note.note_split(text)[0])
    except note.BadNote as exc:
        return "kept checkpoint", f"cannot be read: {exc}"
    label = f"kept checkpoint {origin} size {size}"
    slug = slug_of_origin.get(origin)
    if slug is None:
        return label, "its origin is no tenant's log"
    for public in keys.values():
        try:
            note.note_verify(text, origin, public)
            break
        except note.BadNote:
            continue
    else:
        return label, "not signed by a trusted key"
    leaves = leaves_of(slug)
    if size > len(leaves):
        return label, f"the log has only {len(leaves)} leaves now: it was truncated"
    if size == 0 or merkle_log.tree_root(leaves, 0, size) != root:
        return label, ("the log no longer extends this checkpoint: the tree of that size "
                       "has another root (history was rewritten)")
    return label, None


def log_failures(*, tenants: list[tuple[int, str]], keys: dict[str, bytes],
                 kept: list[str] = ()) -> list[dict]:
    """Every failure of the logs of `tenants` [(id, slug)], and of the kept notes."""
    retired, failures, leaves_by_slug = retired_times(), [], {}
    for tenant_id, slug in tenants:
        found, leaves = _tenant_log(tenant_id, slug, keys, retired)
        failures.extend(found)
        leaves_by_slug[slug] = leaves
    origins = {log_origin(slug): slug for slug in leaves_by_slug}
    for text in kept:
        label, problem = kept_problem(text, origins, keys, lambda s: leaves_by_slug[s])
        if problem:
            failures.append(_fail(label, problem))
    return failures
