"""The `log` section of an evidence pack: the tenant's signed log checkpoint (C2SP note)
and the inclusion proof of the run's stream head in it, plus, on request, the consistency
proof between that tree and one an auditor kept (`since`).

The leaf is the one the covering checkpoint appended for the run's stream. The note is
that checkpoint's own; for a checkpoint sealed before the log existed (no note of its
own, its heads appended by migration 0009), it is the tenant's latest note, which
contains it.
"""

import base64

from . import merkle_log, note
from .log import log_checkpoint, log_consistency, log_inclusion, log_leaf_of


def _b64(nodes: list[bytes]) -> list[str]:
    return [base64.b64encode(node).decode() for node in nodes]


def log_section(tenant_id: int, checkpoint, stream: str, *, since: int | None = None):
    """The section (None when the stream has no leaf or no note covers it yet)."""
    leaf = log_leaf_of(tenant_id, checkpoint, stream)
    signed = checkpoint if checkpoint.note else log_checkpoint(tenant_id)
    if leaf is None or signed is None or signed.log_size <= leaf.index:
        return None
    origin, size, root = note.checkpoint_parse(note.note_split(signed.note)[0])
    _, proof = log_inclusion(tenant_id, leaf.index, size)
    section = {"origin": origin, "tree_size": size,
               "root_hash": base64.b64encode(root).decode(), "checkpoint": signed.note,
               "leaf_index": leaf.index,
               "leaf": {"stream": leaf.stream, "seq": leaf.seq, "hash": leaf.hash},
               "inclusion_proof": _b64(proof)}
    if since is not None:
        if since < 1:
            raise merkle_log.ProofRangeError("since must be a tree size of at least 1")
        first, second = sorted((since, size))
        section["consistency"] = {"size": since,
                                  "proof": _b64(log_consistency(tenant_id, first, second))}
    return section
