"""Recomputing a run's receipts and workflow_hash from its stored rows.

Stored JSON goes through `restore_floats` before hashing: PostgreSQL's jsonb gives a float
such as 1e21 back as the integer 1000000000000000000000, which is not what was hashed.
"""

from audit.codes import Code
from audit.hashing import GENESIS_HASH, json_hash
from audit.jcs import restore_floats
from audit.models import AuditEvent

from .models import StepRun
from .receipts import receipt_hash, workflow_hash


def receipt_fields(step: StepRun) -> dict:
    return {"step_id": step.step_id, "attempt": step.attempt, "receipt_seq": step.receipt_seq,
            "input_hash": step.input_hash, "output_hash": step.output_hash or None,
            "decision": step.decision, "policy_versions": step.policy_versions,
            "prev_receipt_hash": step.prev_receipt_hash, "receipt_hash": step.receipt_hash}


def run_receipts_verify(run, *, steps=None, events=None) -> dict:
    """`{verified, workflow_hash, receipts[], failures[]}`, every hash recomputed. A caller
    that has already read the run's steps or its events passes them."""
    failures, receipts = [], []
    prev = GENESIS_HASH
    if steps is None:
        steps = StepRun.objects.filter(run=run).exclude(receipt_hash="").order_by("receipt_seq")
    else:
        steps = sorted((s for s in steps if s.receipt_hash), key=lambda s: s.receipt_seq)
    for step in steps:
        receipts.append(receipt_fields(step))
        where = {"step_id": step.step_id, "attempt": step.attempt}
        if json_hash(restore_floats(step.input)) != step.input_hash:
            failures.append({**where, "problem": "input_hash does not match the stored input"})
        if (json_hash(restore_floats(step.output)) != step.output_hash if step.output_hash
                else step.output is not None):  # no output_hash: a failed step, no output
            failures.append({**where, "problem": "output_hash does not match the stored output"})
        if step.prev_receipt_hash != prev:
            failures.append({**where, "problem": "receipt does not link to the previous one"})
        recomputed = receipt_hash(
            run_id=str(run.run_id), step_id=step.step_id, attempt=step.attempt,
            input_hash=step.input_hash, output_hash=step.output_hash or None,
            decision=step.decision,
            policy_versions=step.policy_versions, prev_receipt_hash=prev)
        if recomputed != step.receipt_hash:
            failures.append({**where, "problem": "receipt_hash does not match its fields"})
        prev = step.receipt_hash
    if events is None:
        seal = (AuditEvent.objects.filter(stream__name=run.stream_name, code=Code.RUN_SEALED)
                .order_by("-seq").first())
    else:
        seal = max((e for e in events if e.code == Code.RUN_SEALED), key=lambda e: e.seq,
                   default=None)
    if run.workflow_hash or seal:
        if seal is None:
            failures.append({"problem": "run has a workflow_hash but no FC-RUN-003 event"})
        else:
            recomputed = workflow_hash(
                run_id=str(run.run_id), status=run.status, last_receipt_hash=prev,
                stream=run.stream_name, head_seq=seal.seq - 1, head_hash=seal.prev_hash)
            if recomputed != run.workflow_hash:
                failures.append({"problem": "workflow_hash does not match the last receipt, "
                                            "the status and the stream head"})
            if seal.data.get("workflow_hash") != run.workflow_hash:
                failures.append({"problem": "workflow_hash differs from the sealed event"})
    return {"verified": not failures, "workflow_hash": run.workflow_hash or None,
            "receipts": receipts, "failures": failures}
