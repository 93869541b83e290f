"""The database side of `audit.binding`: each run's rows against the events of its stream.

`audit_verify` runs `run_facts_verify` (registered with `audit.facts` when the app
starts): for every run in scope it reads the run, its steps, decisions, gates and votes
and its events, shaped as in an evidence pack, and applies the same pure check as
`python -m audit.verify_pack`. A row rewritten, added or deleted in the database (the
immutability triggers guard only the events) is reported with the row and the event:

    run/…#13: gates[0] (gate 5).status: is 'approved', but events[12] (FC-GATE-005)
              records 'overridden'

Runs are read in chunks of `CHUNK`, a handful of queries per chunk.
"""

import uuid

from django.db.models import TextField
from django.db.models.functions import Cast

from audit.binding import Unbound, check_bound, none
from audit.jcs import restore_floats
from audit.models import AuditEvent
from audit.stored import stored_value
from gates.models import Approval, Gate, PolicyDecision

from .models import Run, StepRun

CHUNK = 200
_RUN = ("run_id", "status", "status_reason")
_STEP = ("run_id", "step_id", "status", "attempt", "input_hash", "output_hash",
         "receipt_hash")
_GATE = ("id", "run_id", "step_run__step_id", "status", "source", "reason",
         "required_approvals", "requested_by", "approver_group", "needs_review",
         "reviewed_by", "review_note")
_DECISION = ("step_run__run_id", "step_run__step_id", "attempt", "decision", "reason",
             "policy_id", "policy_version", "tier")


def _read(queryset, fields, json_fields) -> list[dict]:
    """`values(*fields)` with each JSON field read as text and parsed by `audit.stored`
    (a value stored before the input limits is marked `unreadable`, never raised), and
    floats restored as they were hashed."""
    texts = {f"{name}__text": Cast(name, TextField()) for name in json_fields}
    rows = []
    for row in queryset.annotate(**texts).values(*fields, *texts):
        for name in json_fields:
            value, problem = stored_value(row.pop(f"{name}__text"))
            row[name] = restore_floats(value)
            if problem:
                row.setdefault("unreadable", {})[name] = problem
        rows.append(row)
    return rows


def _runs_in_scope(tenant_ids, stream):
    runs = Run.objects.all()
    if tenant_ids is not None:
        runs = runs.filter(tenant_id__in=tenant_ids)
    if stream is not None:
        try:
            run_id = uuid.UUID(stream.removeprefix("run/")) if stream.startswith("run/") \
                else None
        except ValueError:
            run_id = None
        if run_id is None:
            return runs.none()
        runs = runs.filter(run_id=run_id)
    return runs.order_by("run_id")


def _grouped(rows, key: str) -> dict:
    grouped = {}
    for row in rows:
        grouped.setdefault(row.pop(key), []).append(row)
    return grouped


def _sections(run_ids: list) -> dict:
    """{section: {run_id: [rows]}} of the pack's shape, for the runs of `run_ids`."""
    steps = _grouped((dict(s, **{f: none(s[f]) for f in ("input_hash", "output_hash",
                                                         "receipt_hash")})
                      for s in _read(StepRun.objects.filter(run_id__in=run_ids)
                                     .order_by("index", "step_id"), _STEP,
                                     ("input", "output", "error"))), "run_id")
    decisions = _grouped(
        ({"run_id": d.pop("step_run__run_id"), "step_id": d.pop("step_run__step_id"), **d}
         for d in _read(PolicyDecision.objects.filter(step_run__run_id__in=run_ids)
                        .order_by("evaluated_at", "id"), _DECISION, ("rules_triggered",))),
        "run_id")
    votes = _grouped(_read(Approval.objects.filter(gate__run_id__in=run_ids)
                           .order_by("created_at", "id"),
                           ("gate_id", "actor", "decision", "comment"), ("input",)), "gate_id")
    gates = _grouped(({"gate_id": g.pop("id"), "step_id": g.pop("step_run__step_id"), **g}
                      for g in _read(Gate.objects.filter(run_id__in=run_ids)
                                     .order_by("created_at", "id"), _GATE, ("resolution",))),
                     "run_id")
    for items in gates.values():
        for gate in items:
            gate["approvals"] = votes.get(gate["gate_id"], [])
    names = {f"run/{run_id}": run_id for run_id in run_ids}
    events = _grouped(({"run_id": names[e.pop("stream__name")], **e} for e in _read(
        AuditEvent.objects.filter(stream__name__in=list(names)).order_by("stream_id", "seq"),
        ("stream__name", "seq", "code", "actor"), ("data",))), "run_id")
    return {"steps": steps, "decisions": decisions, "gates": gates, "events": events}


def _unreadable(run, steps, decisions, gates, events) -> str | None:
    """The first row value that cannot be read, as `path: reason`; None when the run's
    events cannot be read either (the chain walk names those) or all can."""
    if any("unreadable" in e for e in events):
        return None
    rows = [("run", run)] + [(f"steps[{k}]", s) for k, s in enumerate(steps)] + [
        (f"decisions[{k}]", d) for k, d in enumerate(decisions)] + [
        (f"gates[{g}]", gate) for g, gate in enumerate(gates)] + [
        (f"gates[{g}].approvals[{a}]", v) for g, gate in enumerate(gates)
        for a, v in enumerate(gate["approvals"])]
    for path, row in rows:
        if "unreadable" in row:
            field, reason = next(iter(row["unreadable"].items()))
            return f"{path}.{field}: unreadable in the server's database ({reason})"
    return ""


def run_facts_verify(*, tenant_ids=None, stream=None) -> list[dict]:
    """Failures `{stream, seq, problem}`: the first unbound fact of each run in scope."""
    failures = []
    run_ids = list(_runs_in_scope(tenant_ids, stream).values_list("run_id", flat=True))
    for start in range(0, len(run_ids), CHUNK):
        ids = run_ids[start:start + CHUNK]
        sections = _sections(ids)
        for run in _read(Run.objects.filter(run_id__in=ids).order_by("run_id"), _RUN,
                         ("output",)):
            rows = {key: sections[key].get(run["run_id"], [])
                    for key in ("steps", "decisions", "gates", "events")}
            stream_name = f"run/{run['run_id']}"
            problem = _unreadable(run, **rows)
            if problem is None:
                continue
            if problem:
                failures.append({"stream": stream_name, "seq": None, "problem": problem})
                continue
            events = rows["events"]
            try:
                check_bound(run=run, **rows)
            except Unbound as exc:
                seq = events[exc.event_index]["seq"] if exc.event_index is not None else None
                failures.append({"stream": stream_name, "seq": seq,
                                 "problem": str(exc)})
    return failures
