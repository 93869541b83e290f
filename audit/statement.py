"""The attestation of a run: an in-toto Statement v1 in a DSSE envelope. Pure; no Django.

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "run/<run_id>", "digest": {"sha256": <workflow_hash>}}],
     "predicateType": PREDICATE_TYPE,
     "predicate": <evidence summary, `evidence_summary(pack)`>}

The summary is computed from the pack alone, so a verifier recomputes it and compares:
the run, its receipts, decisions and votes, the covering log checkpoint (origin, tree
size, root, the run's leaf), and `fields`, the sha256 of the JCS of every other field of
the pack (`audit.attestation.field_digests`), which binds what the chain does not. An
unsealed run has no workflow_hash: its subject digest is its stream head hash, and
`sealed` is false.
"""

from .attestation import field_digests

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://fcore.invalid/attestation/evidence-summary/v1"
SUMMARY_FORMAT = "fc-evidence-summary/1"
NOT_SUMMARISED = ("checkpoint", "attestation", "log")
STATEMENT_FIELDS = {"_type", "subject", "predicateType", "predicate"}


def _log_summary(log) -> dict | None:
    if not isinstance(log, dict):
        return None
    return {key: log.get(key) for key in ("origin", "tree_size", "root_hash", "leaf_index")}


def evidence_summary(pack: dict) -> dict:
    """FC's evidence summary of a pack (the statement's predicate)."""
    run = pack.get("run") or {}
    receipts = [{"step_id": r.get("step_id"), "attempt": r.get("attempt"),
                 "receipt_hash": r.get("receipt_hash")} for r in pack.get("receipts") or []]
    votes = [{"gate_id": gate.get("gate_id"), "actor": vote.get("actor"),
              "decision": vote.get("decision")}
             for gate in pack.get("gates") or [] for vote in gate.get("approvals") or []]
    decisions = [{key: d.get(key) for key in ("step_id", "attempt", "decision", "policy_id",
                                              "policy_version")}
                 for d in pack.get("decisions") or []]
    rest = {key: value for key, value in pack.items() if key not in NOT_SUMMARISED}
    return {
        "format": SUMMARY_FORMAT, "run_id": run.get("run_id"), "tenant": run.get("tenant_id"),
        "workflow": run.get("workflow"), "workflow_version": run.get("workflow_version"),
        "status": run.get("status"), "sealed": pack.get("workflow_hash") is not None,
        "generated_at": pack.get("generated_at"),
        "receipts": receipts,
        "last_receipt_hash": receipts[-1]["receipt_hash"] if receipts else None,
        "decisions": decisions, "votes": votes,
        "checkpoint": _log_summary(pack.get("log")),
        "fields": field_digests(rest),
    }


def statement(pack: dict) -> dict:
    """The in-toto Statement v1 of a pack."""
    run_id = (pack.get("run") or {}).get("run_id")
    digest = pack.get("workflow_hash") or (pack.get("stream") or {}).get("head_hash")
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": f"run/{run_id}", "digest": {"sha256": digest}}],
            "predicateType": PREDICATE_TYPE, "predicate": evidence_summary(pack)}
