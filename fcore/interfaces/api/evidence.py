"""The evidence pack of a run: one JSON document with everything needed to check the run
offline (`python -m audit.verify_pack`): run, pinned definition, steps with inputs and
outputs, decisions with policy versions and fired rules, gates with every vote, the child
runs its workflow steps started (each named by an `FC-STEP-001` of the run), every event
of its stream exactly as hashed, receipts, workflow_hash, the covering checkpoint with its
signature, public key and Merkle inclusion proof, the tenant's log checkpoint (C2SP signed
note) with the inclusion proof of the run's head in it, and the attestation: a DSSE
envelope of an in-toto statement whose predicate binds every other field.

Covering checkpoint: the latest checkpoint holding the run's stream, if its head there is
at or after the last event read (for an ended run, the first checkpoint that covers its
final event). When there is none yet, the pack seals one (`checkpoint_seal`, as the beat
task would a minute later) so that a pack is always anchored; the events are then read up
to exactly the checkpointed head. Only when no signing key is configured is `checkpoint`
null, with the reason in `checkpoint_note`. The format is specified in
docs/audit-format.md.
"""

import json
import uuid

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from audit import signing
from audit.binding import NULL_SPELLED
from audit.checkpoints import (
    checkpoint_covering,
    checkpoint_document,
    checkpoint_proof,
    checkpoint_seal,
)
from audit.dsse import IN_TOTO_PAYLOAD_TYPE, envelope_sign
from audit.hashing import format_at
from audit.jcs import canonical, restore_floats, unreadable
from audit.keys import public_keys, signing_key
from audit.log_pack import log_section
from audit.statement import statement
from audit.stored import events_readable
from runs import selectors
from runs.verification import run_receipts_verify

from .serializers import DecisionOut, EventOut, GateOut, RunSummaryOut, StepOut

FORMAT = "fc-evidence/2"


def _anchor(run, last_seq: int):
    """(checkpoint, head, note): the covering checkpoint, sealing one if needed."""
    if not last_seq:
        return None, None, "the run's stream has no event yet"
    checkpoint, head = checkpoint_covering(run.stream_name, last_seq)
    if checkpoint is None:
        try:
            checkpoint_seal(tenant=run.tenant)
        except ImproperlyConfigured as exc:
            return None, None, f"no checkpoint could be sealed: {exc}"
        checkpoint, head = checkpoint_covering(run.stream_name, last_seq)
    if checkpoint is None:  # pragma: no cover - a seal always includes a changed stream
        return None, None, "no checkpoint covers the run's stream yet"
    return checkpoint, head, None


def _checkpoint_section(checkpoint, stream: str) -> dict:
    public = public_keys().get(checkpoint.key_id)
    document = checkpoint_document(checkpoint,
                                   signing.b64encode(public) if public else None)
    document["proof"] = checkpoint_proof(checkpoint, stream)
    return document


def _items(serializer_class, rows, **extra_fields) -> list[dict]:
    items = []
    for row in rows:
        item = serializer_class(row).data
        item.update({name: getter(row) for name, getter in extra_fields.items()})
        items.append(item)
    return items


def _mark_unreadable(item: dict, keys) -> None:
    """Null each value of `item` among `keys` that cannot be read and hashed (stored by a
    server before the input limits), naming why in `item["unreadable"]`: the pack is
    still produced, and the verifier reports that field instead of a reader crashing."""
    reasons = {}
    for key in keys:
        problem = unreadable(item.get(key)) if key in item else None
        if problem:
            item[key], reasons[key] = None, problem
    if reasons:
        item["unreadable"] = reasons


def _guard_sections(pack: dict) -> None:
    _mark_unreadable(pack["run"], ("input", "output", "metadata"))
    for step in pack["steps"]:
        _mark_unreadable(step, ("input", "output", "error"))
    for decision in pack["decisions"]:
        _mark_unreadable(decision, ("context", "rules_triggered", "policies"))
    for gate in pack["gates"]:
        _mark_unreadable(gate, ("input_schema", "resolution"))
        for vote in gate["approvals"]:
            _mark_unreadable(vote, ("input",))


def _children(run, events: list[dict]) -> list[dict]:
    """The child runs the run's workflow steps started, as the run's `FC-STEP-001` events
    name them (step, attempt, workflow, version), with each child's seal (null while it
    runs): the seal is the child's own fact, which its own pack proves."""
    started = [e["data"] for e in events if e["code"] == "FC-STEP-001"
               and isinstance(e["data"], dict) and e["data"].get("child_run_id")]
    seals = dict(selectors.run_children(run).filter(
        run_id__in=[d["child_run_id"] for d in started]).values_list("run_id", "workflow_hash"))
    return [{"run_id": d["child_run_id"], "step_id": d["step_id"], "attempt": d["attempt"],
             "workflow": d["child_workflow"], "version": d["child_version"],
             "workflow_hash": seals.get(uuid.UUID(d["child_run_id"])) or None}
            for d in started]


def evidence_pack(run, *, since: int | None = None) -> dict:
    """The evidence pack of `run` (a JSON-ready dict; see the module docstring). `since`:
    the tree size of a checkpoint the auditor kept; the pack's `log` then carries the
    consistency proof between it and the pack's checkpoint (`ProofRangeError` when no
    such tree exists).

    Rows and events are read under the run's row lock (`selectors.run_locked_for_reading`):
    every change to a run takes it, so the rows in the pack are exactly the state its
    events record — the verifier binds each to the other, both ways.
    """
    with transaction.atomic():
        return _evidence_pack(selectors.run_locked_for_reading(run), since=since)


def _null_spelled(pack: dict) -> None:
    """A missing value is null in the pack (audit.binding.NULL_SPELLED), never ""."""
    for section, fields in NULL_SPELLED.items():
        rows = pack[section] if isinstance(pack[section], list) else [pack[section]]
        for row in rows:
            for field in fields:
                if row.get(field) == "":
                    row[field] = None


def _evidence_pack(run, *, since: int | None) -> dict:
    definition = run.definition
    receipts = run_receipts_verify(run)
    steps = _items(StepOut, selectors.run_steps(run),
                   input=lambda s: s.input, prev_receipt_hash=lambda s: s.prev_receipt_hash,
                   receipt_seq=lambda s: s.receipt_seq,
                   policy_versions=lambda s: s.policy_versions)
    decisions = _items(DecisionOut, selectors.run_decisions(run), context=lambda d: d.context)
    gates = GateOut(selectors.run_gates(run), many=True).data
    last = selectors.run_events(run).order_by("-seq").values_list("seq", flat=True).first()
    checkpoint, head, note = _anchor(run, last or 0)
    events = selectors.run_events(run).select_related("stream")
    if head is not None:
        events = events.filter(seq__lte=head["seq"])
    events = events_readable(events)
    stream_head = events[-1] if events else None
    pack = {
        "format": FORMAT,
        "generated_at": format_at(timezone.now()),
        "run": RunSummaryOut(run).data,
        "definition": {"name": definition.name, "version": definition.version,
                       "steps": definition.steps, "spec_hash": definition.spec_hash,
                       **({"output": definition.output} if definition.output is not None
                          else {})},
        "steps": steps,
        "decisions": decisions,
        "gates": gates,
        "events": EventOut(events, many=True).data,
        "stream": {"name": run.stream_name,
                   "head_seq": stream_head.seq if stream_head else 0,
                   "head_hash": stream_head.hash if stream_head else None},
        "receipts": receipts["receipts"],
        "workflow_hash": run.workflow_hash or None,
        "verification": {"receipts_verified": receipts["verified"],
                         "failures": receipts["failures"]},
        "checkpoint_note": note,
    }
    pack["children"] = _children(run, pack["events"])
    _guard_sections(pack)
    _null_spelled(pack)
    # What the client will parse: JSON round trip (UUIDs, datetimes → strings), then the
    # integers PostgreSQL's jsonb made of large floats back to floats.
    pack = restore_floats(json.loads(json.dumps(pack, cls=JSONEncoder)))
    pack["checkpoint"] = _checkpoint_section(checkpoint, run.stream_name) if checkpoint else None
    pack["log"] = log_section(run.tenant_id, checkpoint, run.stream_name,
                              since=since) if checkpoint else None
    pack["attestation"] = attestation_envelope(pack)
    return pack


def attestation_envelope(pack: dict) -> dict | None:
    """The DSSE envelope of the pack's in-toto statement (audit.statement); None without
    a signing key."""
    try:
        key = signing_key()
    except ImproperlyConfigured:
        return None
    return envelope_sign(canonical(statement(pack)), payload_type=IN_TOTO_PAYLOAD_TYPE,
                         private=key.private, key_id=key.key_id)
