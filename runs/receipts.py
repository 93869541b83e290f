"""Per-step receipts and the run's workflow_hash (DESIGN §7). Pure functions.

    receipt_hash  = sha256(JCS({run_id, step_id, attempt, input_hash, output_hash,
                                decision, policy_versions, prev_receipt_hash}))
    workflow_hash = sha256(JCS({run_id, status, last_receipt_hash,
                                stream, head_seq, head_hash}))

Receipts chain in the order steps ended; the first links to 64 zeros. The workflow hash
seals the last receipt, the final status and the stream head just before `FC-RUN-003`.
"""

from audit.hashing import GENESIS_HASH, json_hash


def receipt_hash(*, run_id: str, step_id: str, attempt: int, input_hash: str,
                 output_hash: str, decision: str, policy_versions: list,
                 prev_receipt_hash: str) -> str:
    return json_hash({
        "run_id": run_id, "step_id": step_id, "attempt": attempt, "input_hash": input_hash,
        "output_hash": output_hash, "decision": decision, "policy_versions": policy_versions,
        "prev_receipt_hash": prev_receipt_hash,
    })


def workflow_hash(*, run_id: str, status: str, last_receipt_hash: str, stream: str,
                  head_seq: int, head_hash: str) -> str:
    return json_hash({
        "run_id": run_id, "status": status, "last_receipt_hash": last_receipt_hash,
        "stream": stream, "head_seq": head_seq, "head_hash": head_hash,
    })


__all__ = ["GENESIS_HASH", "receipt_hash", "workflow_hash"]
