"""The evidence pack of a run: one JSON document with everything needed to check the run
offline (run, pinned definition, steps, decisions, gates and votes, every event of its
stream exactly as hashed, receipts, workflow_hash)."""

from django.utils import timezone

from audit.hashing import format_at

from . import selectors
from .api.serializers import DecisionOut, EventOut, GateOut, RunSummaryOut, StepOut
from .verification import run_receipts_verify

FORMAT = "fc-evidence/1"


def evidence_pack(run) -> dict:
    definition = run.definition
    steps = list(selectors.run_steps(run))
    events = list(selectors.run_events(run).select_related("stream"))
    decisions = []
    for decision in selectors.run_decisions(run):
        item = DecisionOut(decision).data
        item["context"] = decision.context
        decisions.append(item)
    step_items = []
    for step in steps:
        item = StepOut(step).data
        item.update({"input": step.input, "prev_receipt_hash": step.prev_receipt_hash,
                     "receipt_seq": step.receipt_seq, "policy_versions": step.policy_versions})
        step_items.append(item)
    receipts = run_receipts_verify(run)
    head = events[-1] if events else None
    return {
        "format": FORMAT,
        "generated_at": format_at(timezone.now()),
        "run": RunSummaryOut(run).data,
        "definition": {"name": definition.name, "version": definition.version,
                       "steps": definition.steps, "spec_hash": definition.spec_hash},
        "steps": step_items,
        "decisions": decisions,
        "gates": GateOut(selectors.run_gates(run), many=True).data,
        "events": EventOut(events, many=True).data,
        "stream": {"name": run.stream_name, "head_seq": head.seq if head else 0,
                   "head_hash": head.hash if head else None},
        "receipts": receipts["receipts"],
        "workflow_hash": run.workflow_hash or None,
        "verification": {"receipts_verified": receipts["verified"],
                         "failures": receipts["failures"]},
        "checkpoint": None,
    }
