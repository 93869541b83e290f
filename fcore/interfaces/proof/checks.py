"""Client-side recomputation for the proof: pure functions over API answers.

The audit chain is re-walked with `rfc8785` and `hashlib` only; the receipt chain and the
`workflow_hash` seal are recomputed from the receipts and the `FC-RUN-003` event.
"""

import hashlib

import rfc8785

from audit.codes import Code

CAMPAIGN = "PT-004 Workflow Orchestration Execution Spine"
WORKFLOW = "pt004_execution_spine"
STEPS = ("step_1", "step_2", "step_3", "step_4", "step_5")
GENESIS = "0" * 64
TERMINAL = {"completed", "failed", "cancelled"}


def _sha256_jcs(value) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


# --- client-side recomputation (pure) ----------------------------------------------------

def chain_check(logs: list[dict]) -> dict:
    """Re-walk one stream's events: numbering from 1, links from 64 zeros, every hash."""
    failures, prev, expected_seq = [], GENESIS, 1
    for event in logs:
        where = {"stream": event.get("stream"), "seq": event.get("seq")}
        if event.get("seq") != expected_seq:
            failures.append({**where, "problem": f"expected seq {expected_seq}"})
        if event.get("prev_hash") != prev:
            failures.append({**where, "problem": "prev_hash does not link"})
        body = {k: event.get(k) for k in ("stream", "seq", "code", "actor", "at", "data")}
        recomputed = hashlib.sha256(event.get("prev_hash", "").encode("ascii")
                                    + rfc8785.dumps(body)).hexdigest()
        if recomputed != event.get("hash"):
            failures.append({**where, "problem": "hash does not match content"})
        prev, expected_seq = event.get("hash"), expected_seq + 1
    return {"ok": not failures, "events": len(logs), "head_hash": prev if logs else None,
            "failures": failures}


def receipts_check(run: dict, receipt_report: dict, logs: list[dict]) -> dict:
    """Recompute the receipt chain and the `workflow_hash` seal from what the API returned."""
    failures, prev = [], GENESIS
    for r in receipt_report.get("receipts", []):
        fields = ("step_id", "attempt", "input_hash", "output_hash", "decision",
                  "policy_versions")
        body = {"run_id": run["run_id"], **{k: r.get(k) for k in fields},
                "prev_receipt_hash": prev}
        if r.get("prev_receipt_hash") != prev:
            failures.append({"step_id": r.get("step_id"), "problem": "receipt does not link"})
        if _sha256_jcs(body) != r.get("receipt_hash"):
            failures.append({"step_id": r.get("step_id"), "problem": "receipt_hash mismatch"})
        prev = r.get("receipt_hash")
    seals = [e for e in logs if e.get("code") == Code.RUN_SEALED]
    if run.get("workflow_hash"):
        if not seals:
            failures.append({"problem": "workflow_hash set but no FC-RUN-003 event"})
        else:
            seal = seals[-1]
            recomputed = _sha256_jcs({
                "run_id": run["run_id"], "status": run["status"], "last_receipt_hash": prev,
                "stream": seal["stream"], "head_seq": seal["seq"] - 1,
                "head_hash": seal["prev_hash"]})
            if recomputed != run["workflow_hash"]:
                failures.append({"problem": "workflow_hash does not seal the last receipt, "
                                            "the status and the stream head"})
    return {"ok": not failures, "receipts": len(receipt_report.get("receipts", [])),
            "failures": failures}


def status_transitions(logs: list[dict]) -> list[dict]:
    """The run's status changes, in order, from its `FC-RUN-002` events."""
    return [{"from": e["data"].get("from"), "to": e["data"].get("to"),
             "reason": e["data"].get("reason", "")}
            for e in logs if e.get("code") == Code.RUN_STATUS]


def step_of(run: dict, step_id: str) -> dict:
    return next((s for s in run.get("steps", []) if s["step_id"] == step_id), {})


def decision_of(run: dict, step_id: str) -> str | None:
    found = [d for d in run.get("decisions", []) if d.get("step_id") == step_id]
    return found[-1]["decision"] if found else None
