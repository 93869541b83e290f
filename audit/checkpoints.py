"""Signed checkpoints: the heads of a tenant's changed streams under a signed Merkle root.

`checkpoint_seal(tenant=…)` is the one service. In one transaction it:
1. locks the tenant's admin stream head (`tenant/<slug>/admin`): two seals of one tenant
   serialise there, and no other stream is locked, so appends never wait on a seal;
2. reads the committed head `{stream, seq, hash}` of every stream of the tenant whose head
   moved past its `CheckpointCursor.seen_seq`, sorted by stream name (code-point order).
   Only streams marked `unsealed` are read (a partial index holds them): every append
   marks its stream, so the work follows what changed, not how many streams there are;
3. builds the RFC 6962 tree (`audit.merkle`), links to the previous checkpoint's hash,
   signs JCS(body) with the configured Ed25519 key (`audit.keys`), appends the heads to
   the tenant's append-only log and signs its C2SP checkpoint note (`audit.log`), stores
   the checkpoint and the new leaves;
4. appends `FC-AUD-001` to the admin stream, moves the cursors and clears `unsealed` on
   the streams it read whose head is still the one it saw. An append that commits
   meanwhile moved the head, so its mark stays (on PostgreSQL the clearing UPDATE waits for
   an uncommitted append's row lock and then re-checks the head).

Nothing changed → nothing sealed (returns None). The admin stream's `FC-AUD-001` event
itself does not count as a change, so an idle tenant gets no checkpoint every minute; it is
covered by the next checkpoint in which the admin stream changes for another reason.

`checkpoint_covering(stream_name, seq)` finds the checkpoint to cite for a stream head,
and `checkpoint_proof` gives the inclusion proof of that head (both for evidence packs).
"""

from django.apps import apps
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import merkle, signing
from .codes import Code
from .hashing import GENESIS_HASH, checkpoint_body, checkpoint_hash, format_at
from .jcs import canonical
from .keys import signing_key, signing_key_register
from .log import log_extend, log_note
from .models import AuditStream, Checkpoint, CheckpointCursor, LogLeaf
from .services import _locked_stream, admin_stream_name, audit_append

SEAL_ACTOR = "system:checkpoint"


def _unsealed_heads(tenant_id: int) -> tuple[list[dict], list[tuple[str, int]]]:
    """(heads that moved past their cursor, sorted by stream name; every unsealed stream
    read, as (name, head_seq)). Marked streams whose head did not move (the admin stream
    after its own `FC-AUD-001`) are read but not sealed."""
    seen = CheckpointCursor.objects.filter(stream=OuterRef("name")).values("seen_seq")[:1]
    rows = (AuditStream.objects.filter(tenant_id=tenant_id, unsealed=True)
            .annotate(seen=Coalesce(Subquery(seen), Value(0)))
            .values_list("name", "head_seq", "head_hash", "seen"))
    heads, read = [], []
    for name, seq, digest, seen_seq in rows:
        read.append((name, seq))
        if seq > seen_seq:
            heads.append({"stream": name, "seq": seq, "hash": digest})
    heads.sort(key=lambda head: head["stream"])
    return heads, read


def _marks_clear(read: list[tuple[str, int]], *, chunk: int = 400) -> None:
    """Clear `unsealed` on the streams read, where the head is still the one read."""
    for start in range(0, len(read), chunk):
        unmoved = Q()
        for name, seq in read[start:start + chunk]:
            unmoved |= Q(name=name, head_seq=seq)
        AuditStream.objects.filter(unmoved, unsealed=True).update(unsealed=False)


def checkpoint_seal(*, tenant, actor: str = SEAL_ACTOR) -> Checkpoint | None:
    """Seal a checkpoint of the tenant's changed streams; None when nothing changed."""
    heads, read = _unsealed_heads(tenant.id)
    if not heads:
        _marks_clear(read)  # e.g. the admin stream after the last seal's own event
        return None
    key = signing_key()
    signing_key_register(key)  # its own transaction: it locks every tenant's admin stream
    admin = admin_stream_name(tenant.slug)
    with transaction.atomic():
        _locked_stream(tenant_id=tenant.id, stream=admin)  # serialises seals of the tenant
        heads, read = _unsealed_heads(tenant.id)  # re-read under the lock
        if not heads:
            _marks_clear(read)
            return None
        last = Checkpoint.objects.filter(tenant_id=tenant.id).order_by("-seq").first()
        size, log_root, frontier, leaves = log_extend(tenant_id=tenant.id, previous=last,
                                                      heads=heads)
        body = checkpoint_body(
            tenant=tenant.slug, seq=last.seq + 1 if last else 1,
            prev_hash=last.hash if last else GENESIS_HASH, root=merkle.merkle_root(heads),
            tree_size=len(heads), at=format_at(timezone.now()), key_id=key.key_id)
        checkpoint = Checkpoint.objects.create(
            tenant_id=tenant.id, tenant_slug=tenant.slug, seq=body["seq"],
            prev_hash=body["prev_hash"], root=body["root"], tree_size=body["tree_size"],
            heads=heads, key_id=key.key_id, at=body["at"], hash=checkpoint_hash(body),
            signature=signing.sign(key.private, canonical(body)),
            log_size=size, log_root=log_root.hex(), log_frontier=[n.hex() for n in frontier],
            note=log_note(tenant_slug=tenant.slug, size=size, root=log_root,
                          private=key.private))
        for leaf in leaves:
            leaf.checkpoint = checkpoint
        LogLeaf.objects.bulk_create(leaves)
        event = audit_append(
            tenant_id=tenant.id, stream=admin, code=Code.CHECKPOINT_SEALED, actor=actor,
            data={"checkpoint_seq": checkpoint.seq, "hash": checkpoint.hash,
                  "prev_hash": checkpoint.prev_hash, "root": checkpoint.root,
                  "tree_size": checkpoint.tree_size, "key_id": checkpoint.key_id})
        _cursors_move(tenant.id, checkpoint, heads, admin=admin, admin_seen=event.seq)
        _marks_clear([(name, seq) for name, seq in read if name != admin]
                     + [(admin, event.seq)])
    return checkpoint


def _cursors_move(tenant_id: int, checkpoint: Checkpoint, heads: list[dict], *, admin: str,
                  admin_seen: int) -> None:
    rows = {h["stream"]: CheckpointCursor(tenant_id=tenant_id, stream=h["stream"], seq=h["seq"],
                                          hash=h["hash"], checkpoint=checkpoint,
                                          seen_seq=h["seq"])
            for h in heads}
    if admin in rows:
        rows[admin].seen_seq = admin_seen
    CheckpointCursor.objects.bulk_create(
        rows.values(), update_conflicts=True, unique_fields=["stream"],
        update_fields=["seq", "hash", "checkpoint", "seen_seq"])
    if admin not in rows:
        cursor, _ = CheckpointCursor.objects.get_or_create(
            stream=admin, defaults={"tenant_id": tenant_id})
        CheckpointCursor.objects.filter(pk=cursor.pk).update(seen_seq=admin_seen)


def checkpoints_seal_all() -> int:
    """Seal a checkpoint for every tenant whose streams changed; returns how many."""
    tenant_model = apps.get_model("fcore", "Tenant")
    sealed = 0
    for tenant in tenant_model.objects.order_by("id").iterator():
        if checkpoint_seal(tenant=tenant) is not None:
            sealed += 1
    return sealed


def checkpoint_covering(stream: str, seq: int) -> tuple[Checkpoint | None, dict | None]:
    """The latest checkpoint that holds `stream`, with its head there, if that head is at
    `seq` or later (for an ended run: the first checkpoint covering its final event)."""
    cursor = (CheckpointCursor.objects.filter(stream=stream, checkpoint__isnull=False)
              .select_related("checkpoint").first())
    if cursor is None or cursor.seq < seq:
        return None, None
    return cursor.checkpoint, {"stream": stream, "seq": cursor.seq, "hash": cursor.hash}


def checkpoint_proof(checkpoint: Checkpoint, stream: str) -> dict:
    """`{leaf_index, leaf, audit_path}` of `stream`'s head in `checkpoint`."""
    heads = checkpoint.heads
    index = next(i for i, head in enumerate(heads) if head["stream"] == stream)
    leaf = heads[index]
    return {"leaf_index": index,
            "leaf": {"stream": leaf["stream"], "seq": leaf["seq"], "hash": leaf["hash"]},
            "audit_path": merkle.audit_path(heads, index)}


def checkpoint_document(checkpoint: Checkpoint, public_key: str | None) -> dict:
    """A checkpoint as published (evidence packs, the API): body, hash, signature, key."""
    body = checkpoint_body(
        tenant=checkpoint.tenant_slug, seq=checkpoint.seq, prev_hash=checkpoint.prev_hash,
        root=checkpoint.root, tree_size=checkpoint.tree_size, at=checkpoint.at,
        key_id=checkpoint.key_id)
    return {**body, "hash": checkpoint.hash, "signature": checkpoint.signature,
            "public_key": public_key}
