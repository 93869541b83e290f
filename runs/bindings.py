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

from audit.binding import Unbound, check_bound, none
from audit.jcs import restore_floats
from audit.models import AuditEvent
from gates.models import Approval, Gate, PolicyDecision

from .models import Run, StepRun

CHUNK = 200
_RUN = ("run_id", "status", "status_reason", "output")
_STEP = ("run_id", "step_id", "status", "attempt", "input", "input_hash", "output",
         "output_hash", "receipt_hash", "error")
_GATE = ("id", "run_id", "step_run__step_id", "status", "source", "reason",
         "required_approvals", "requested_by", "approver_group", "resolution", "needs_review",
         "reviewed_by", "review_note")


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
    """{run_id: (run, steps, decisions, gates, events)} of the pack's shape."""
    steps = _grouped((dict(s, input=restore_floats(s["input"]),
                           output=restore_floats(s["output"]), error=restore_floats(s["error"]),
                           **{f: none(s[f]) for f in ("input_hash", "output_hash",
                                                      "receipt_hash")})
                      for s in StepRun.objects.filter(run_id__in=run_ids)
                      .order_by("index", "step_id").values(*_STEP)), "run_id")
    decisions = _grouped(
        ({"run_id": d["step_run__run_id"], "step_id": d["step_run__step_id"],
          **{k: d[k] for k in ("attempt", "decision", "reason", "policy_id", "policy_version",
                               "tier", "rules_triggered")}}
         for d in PolicyDecision.objects.filter(step_run__run_id__in=run_ids)
         .order_by("evaluated_at", "id").values(
             "step_run__run_id", "step_run__step_id", "attempt", "decision", "reason",
             "policy_id", "policy_version", "tier", "rules_triggered")), "run_id")
    votes = _grouped((dict(v, input=restore_floats(v["input"])) for v in Approval.objects
                      .filter(gate__run_id__in=run_ids).order_by("created_at", "id")
                      .values("gate_id", "actor", "decision", "comment", "input")), "gate_id")
    gates = _grouped(({"gate_id": g.pop("id"), "step_id": g.pop("step_run__step_id"), **g}
                      for g in Gate.objects.filter(run_id__in=run_ids)
                      .order_by("created_at", "id").values(*_GATE)), "run_id")
    for items in gates.values():
        for gate in items:
            gate["approvals"] = votes.get(gate["gate_id"], [])
            gate["resolution"] = restore_floats(gate["resolution"])
    names = {f"run/{run_id}": run_id for run_id in run_ids}
    events = _grouped(({"run_id": names[e["stream__name"]], "seq": e["seq"], "code": e["code"],
                        "actor": e["actor"], "data": restore_floats(e["data"])}
                       for e in AuditEvent.objects.filter(stream__name__in=list(names))
                       .order_by("stream_id", "seq")
                       .values("stream__name", "seq", "code", "actor", "data")), "run_id")
    return {"steps": steps, "decisions": decisions, "gates": gates, "events": events}


def run_facts_verify(*, tenant_ids=None, stream=None) -> list[dict]:
    """Failures `{stream, seq, problem}`: the first unbound fact of each run in scope."""
    failures = []
    runs = _runs_in_scope(tenant_ids, stream).values(*_RUN)
    run_rows = list(runs)
    for start in range(0, len(run_rows), CHUNK):
        chunk = run_rows[start:start + CHUNK]
        sections = _sections([r["run_id"] for r in chunk])
        for run in chunk:
            run = dict(run, output=restore_floats(run["output"]))
            events = sections["events"].get(run["run_id"], [])
            try:
                check_bound(run=run, steps=sections["steps"].get(run["run_id"], []),
                            decisions=sections["decisions"].get(run["run_id"], []),
                            gates=sections["gates"].get(run["run_id"], []), events=events)
            except Unbound as exc:
                seq = events[exc.event_index]["seq"] if exc.event_index is not None else None
                failures.append({"stream": f"run/{run['run_id']}", "seq": seq,
                                 "problem": str(exc)})
    return failures
