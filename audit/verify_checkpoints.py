"""Checking the stored checkpoints themselves, and what they promise about the chains.

Per tenant, checkpoints must be numbered 1, 2, … without a gap, each `prev_hash` must be the
previous checkpoint's hash, each hash must match its body, each signature must verify with
a trusted key, and each root must be the Merkle root of its heads (sorted, unique). The
heads become expectations for the chain scan in `audit.verify`: the event at that
`(stream, seq)` must exist with that hash.
"""

from django.db.models import TextField
from django.db.models.functions import Cast

from . import merkle, signing
from .hashing import GENESIS_HASH, checkpoint_body, checkpoint_hash
from .jcs import canonical, loads_stored
from .keys import public_keys as registered_keys
from .models import Checkpoint


def checkpoint_problem(row: dict, previous: dict | None, keys: dict[str, bytes]) -> str | None:
    """The first thing wrong with one checkpoint row (a dict of its fields), or None."""
    expected_seq = previous["seq"] + 1 if previous else 1
    if row["seq"] != expected_seq:
        return f"expected checkpoint {expected_seq} (a checkpoint is missing)"
    if row["prev_hash"] != (previous["hash"] if previous else GENESIS_HASH):
        return "prev_hash does not link to the previous checkpoint"
    body = checkpoint_body(tenant=row["tenant_slug"], seq=row["seq"],
                           prev_hash=row["prev_hash"], root=row["root"],
                           tree_size=row["tree_size"], at=row["at"], key_id=row["key_id"])
    if checkpoint_hash(body) != row["hash"]:
        return "hash does not match its content"
    public = keys.get(row["key_id"])
    if public is None:
        return f"signed with key {row['key_id']}, which is not trusted"
    if not signing.signature_valid(public, canonical(body), row["signature"]):
        return f"signature does not verify with key {row['key_id']}"
    heads = row["heads"]
    names = [h.get("stream") for h in heads] if isinstance(heads, list) else None
    if not names or names != sorted(set(names)) or len(heads) != row["tree_size"]:
        return "heads are not a sorted, unique list of tree_size streams"
    try:
        root = merkle.merkle_root(heads)
    except (KeyError, TypeError, ValueError):
        return "heads are malformed"
    if root != row["root"]:
        return "root is not the Merkle root of its heads"
    return None


_FIELDS = ("tenant_id", "tenant_slug", "seq", "prev_hash", "root", "tree_size", "key_id",
           "signature", "at", "hash")


def checkpoint_expectations(*, tenant_ids, stream, streams: dict[str, int], public_keys=None):
    """Verify the checkpoints of `tenant_ids` (all when None).

    Returns `(expected, failures, missing, count, keys_used)`: `expected` maps a stream id
    to `{seq: (hash, label)}` for the chain scan; `missing` lists heads of streams that no
    longer exist; only heads of `stream` are kept when it is given.
    """
    keys = public_keys if public_keys is not None else registered_keys()
    rows = Checkpoint.objects.order_by("tenant_id", "seq")
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=tenant_ids)
    expected, failures, gone, used = {}, [], {}, set()
    previous, count = None, 0
    rows = rows.annotate(heads_text=Cast("heads", TextField()))  # parsed by orjson below
    for row in rows.values(*_FIELDS, "heads_text").iterator(chunk_size=500):
        row["heads"] = loads_stored(row.pop("heads_text"))
        count += 1
        if previous is not None and previous["tenant_id"] != row["tenant_id"]:
            previous = None
        label = f"checkpoint {row['tenant_slug']}#{row['seq']}"
        problem = checkpoint_problem(row, previous, keys)
        if problem:
            failures.append({"checkpoint": label, "problem": problem})
        else:
            used.add(row["key_id"])
        previous = row
        for head in row["heads"] if isinstance(row["heads"], list) else []:
            name = head.get("stream") if isinstance(head, dict) else None
            if name is None or (stream is not None and name != stream):
                continue
            sid = streams.get(name)
            if sid is None:
                gone[name] = (head.get("seq"), label)  # the latest checkpoint holding it
                continue
            expected.setdefault(sid, {})[head.get("seq")] = (head.get("hash"), label)
    missing = [{"stream": name, "seq": seq,
                "problem": f"missing: {label} holds this stream's head, but the stream is gone"}
               for name, (seq, label) in sorted(gone.items())]
    return expected, failures, missing, count, sorted(used)
