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
import re
from datetime import UTC, datetime

from .jcs import MAX_SAFE_INTEGER, canonical

GENESIS_HASH = "0" * 64
CHECKPOINT_FORMAT = "fc-checkpoint/1"


JSON_MAX_DEPTH = 64
"""How deeply JSON may nest by default (the server passes `FCORE_JSON_MAX_DEPTH`): well
inside Python's recursion limit, so every reader — serialisers, `rfc8785`, the verifiers —
can walk what was accepted."""

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _character_problem(text: str, path: str, *, nul: bool) -> str | None:
    if nul and "\x00" in text:
        # PostgreSQL's jsonb cannot hold NUL; refused everywhere so both databases agree
        return f"{path}: NUL characters are not allowed"
    found = _LONE_SURROGATE.search(text)
    if found is None:
        return None
    # JSON's "\ud800" escape decodes to a lone surrogate, which UTF-8 (and so RFC 8785
    # and PostgreSQL) cannot encode
    return f"{path}: lone surrogate U+{ord(found.group()):04X} is not allowed"


def json_shape_problem(value, path: str = "$", *, max_depth: int = JSON_MAX_DEPTH
                       ) -> str | None:
    """Why no reader could walk or encode `value` (None when one can): nesting deeper than
    `max_depth` containers, a non-string key, a lone surrogate in a string.

    Iterative, so a value of any depth gets an answer rather than a RecursionError.
    """
    return _first_problem(value, path, max_depth, hashable=False)


def jcs_problem(value, path: str = "$", *, max_depth: int = JSON_MAX_DEPTH) -> str | None:
    """Why `value` cannot be stored and hashed as RFC 8785 JSON (None when it can).

    JCS follows I-JSON: integers must be within ±(2**53 - 1) and numbers finite; strings
    hold no NUL; and the shape must pass `json_shape_problem`.
    """
    return _first_problem(value, path, max_depth, hashable=True)


def _first_problem(value, path: str, max_depth: int, *, hashable: bool) -> str | None:
    stack = [(value, path, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = _character_problem(value, path, nul=hashable)
            if problem:
                return problem
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if hashable and abs(value) > MAX_SAFE_INTEGER:
                return f"{path}: integer outside ±(2**53 - 1); send it as a string"
        elif isinstance(value, float):
            if hashable and not (value == value and abs(value) != float("inf")):
                return f"{path}: not finite"
        elif isinstance(value, list | dict):
            if depth >= max_depth:
                return f"{path}: nested deeper than {max_depth} levels"
            if isinstance(value, list):
                items = [(item, f"{path}[{i}]") for i, item in enumerate(value)]
            else:
                items = []
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{path}: keys must be strings"
                    problem = _character_problem(key, path, nul=hashable)
                    if problem:
                        return problem
                    items.append((item, f"{path}.{key}"))
            # reversed, so that the first problem in document order is the one reported
            stack.extend((item, item_path, depth + 1) for item, item_path in reversed(items))
        else:
            return f"{path}: {type(value).__name__} is not JSON"
    return None


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
