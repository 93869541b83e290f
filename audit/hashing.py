"""The bytes that are hashed. Pure functions; no Django (the offline verifier imports this).

Event hash (DESIGN §7):
    hash = sha256(ascii(prev_hash) + JCS({stream, seq, code, actor, at, data})).hexdigest()
Receipts and the run's seal:
    receipt_hash  = sha256(JCS({run_id, step_id, attempt, input_hash, output_hash,
                                decision, policy_versions, prev_receipt_hash}))
    workflow_hash = sha256(JCS({run_id, status, last_receipt_hash,
                                stream, head_seq, head_hash}))
Checkpoints (docs/audit-format.md):
    hash = sha256(JCS({format, tenant, seq, prev_hash, root, tree_size, at, key_id}))
    signature = Ed25519(JCS of the same object)

JCS is RFC 8785: `audit.jcs.canonical`, byte-identical to `rfc8785.dumps`, never
`json.dumps`.
"""

import hashlib
from datetime import UTC, datetime

from .jcs import MAX_SAFE_INTEGER, canonical

GENESIS_HASH = "0" * 64
CHECKPOINT_FORMAT = "fc-checkpoint/1"


def jcs_problem(value, path: str = "$") -> str | None:
    """Why `value` cannot be hashed as RFC 8785 JSON (None when it can).

    JCS follows I-JSON: integers must be within ±(2**53 - 1) and numbers finite.
    """
    if isinstance(value, str):
        # PostgreSQL's jsonb cannot hold NUL; refused everywhere so both databases agree
        return f"{path}: NUL characters are not allowed" if "\x00" in value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            return f"{path}: integer outside ±(2**53 - 1); send it as a string"
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else f"{path}: not finite"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = jcs_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: keys must be strings"
            if "\x00" in key:
                return f"{path}: NUL characters are not allowed"
            problem = jcs_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    return f"{path}: {type(value).__name__} is not JSON"


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256."""
    return hashlib.sha256(data).hexdigest()


def json_hash(value) -> str:
    """sha256 of the JCS of a JSON value (receipts' input_hash and output_hash)."""
    return sha256_hex(canonical(value))


def event_hash(*, prev_hash: str, stream: str, seq: int, code: str, actor: str, at: str,
               data: dict) -> str:
    """The hash of one event, linked to the previous one by `prev_hash`."""
    body = {"stream": stream, "seq": seq, "code": code, "actor": actor, "at": at, "data": data}
    return sha256_hex(prev_hash.encode("ascii") + canonical(body))


def receipt_hash(*, run_id: str, step_id: str, attempt: int, input_hash: str,
                 output_hash: str, decision: str, policy_versions: list,
                 prev_receipt_hash: str) -> str:
    """The hash of one step's receipt, chained to the previous receipt of the run."""
    return json_hash({
        "run_id": run_id, "step_id": step_id, "attempt": attempt, "input_hash": input_hash,
        "output_hash": output_hash, "decision": decision, "policy_versions": policy_versions,
        "prev_receipt_hash": prev_receipt_hash,
    })


def workflow_hash(*, run_id: str, status: str, last_receipt_hash: str, stream: str,
                  head_seq: int, head_hash: str) -> str:
    """The seal of an ended run: last receipt, final status and stream head."""
    return json_hash({
        "run_id": run_id, "status": status, "last_receipt_hash": last_receipt_hash,
        "stream": stream, "head_seq": head_seq, "head_hash": head_hash,
    })


CHECKPOINT_FIELDS = ("format", "tenant", "seq", "prev_hash", "root", "tree_size", "at",
                     "key_id")


def checkpoint_body(*, tenant: str, seq: int, prev_hash: str, root: str, tree_size: int,
                    at: str, key_id: str) -> dict:
    """The object a checkpoint's hash and signature are computed over."""
    return {"format": CHECKPOINT_FORMAT, "tenant": tenant, "seq": seq, "prev_hash": prev_hash,
            "root": root, "tree_size": tree_size, "at": at, "key_id": key_id}


def checkpoint_hash(body: dict) -> str:
    return sha256_hex(canonical(body))


def format_at(moment: datetime) -> str:
    """The one string form of an event time: UTC, microseconds, `Z` (what the API returns)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
