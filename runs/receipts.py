"""Per-step receipts and the run's workflow_hash (DESIGN §7). Pure functions.

    receipt_hash  = sha256(JCS({run_id, step_id, attempt, input_hash, output_hash,
                                decision, policy_versions, prev_receipt_hash}))
    workflow_hash = sha256(JCS({run_id, status, last_receipt_hash,
                                stream, head_seq, head_hash}))

Receipts chain in the order steps ended; the first links to 64 zeros. The workflow hash
seals the last receipt, the final status and the stream head just before `FC-RUN-003`.
The formulas live in `audit.hashing` so that the offline verifier (`audit.verify_pack`)
uses the very same code without Django; they are re-exported here.
"""

from audit.hashing import GENESIS_HASH, receipt_hash, workflow_hash

__all__ = ["GENESIS_HASH", "receipt_hash", "workflow_hash"]
