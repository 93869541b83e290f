"""Facts bound to events, both ways (docs/audit-format.md, "Facts bound to events").

The rows of an evidence pack — the run's status and output, every step's status, attempt,
hashes, output and error, every policy decision, every gate (opening, outcome, override,
review) and every vote — are not on the hash chain themselves; the events that record
them are. `check_bound` matches each row with the events that record it and each such
event with its row: a row with no event, an event with no row, or a row that disagrees
with its event raises `Unbound`, naming the row (`gates[0] (gate 5).status`) and the event
(`events[12] (FC-GATE-005)`).

Pure (no Django, no database): `audit.verify_pack` calls it on a pack, and the database
check of `audit_verify` (`runs.bindings`) calls it on the rows it reads, shaped the same.
A section is a dict (`run`) or a list of dicts (`steps`, `decisions`, `gates`, each gate
with its `approvals`); `events` are `{seq, code, actor, data}` in stream order.
"""

from .hashing import json_hash
from .jcs import CANONICAL_ERRORS

# What a step's last event says its status is.
_STEP_STATUS = {"FC-STEP-001": "running", "FC-STEP-002": "succeeded",
                "FC-STEP-003": "failed", "FC-STEP-004": "pending"}
_STEP_CODES = {*_STEP_STATUS, "FC-STEP-005"}
_GATE_CODES = {"FC-GATE-001", "FC-GATE-002", "FC-GATE-003", "FC-GATE-004", "FC-GATE-005",
               "FC-GATE-006"}
# A gate opened by these holds its step `waiting` (an executor's gate leaves it as it is).
_HOLDING_SOURCES = {"policy", "approval_step"}
DECISION_FIELDS = ("decision", "reason", "policy_id", "policy_version", "tier",
                   "rules_triggered")
GATE_OPENED_FIELDS = (("step_id", "step_id"), ("source", "source"), ("reason", "reason"),
                      ("required_approvals", "required_approvals"),
                      ("approver_group", "approver_group"))


class Unbound(Exception):
    """A fact of the pack and the events that should record it disagree."""

    def __init__(self, path: str, problem: str, event_index: int | None = None):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem, self.event_index = path, problem, event_index


def none(value):
    """The one spelling of "none" in the pack: null (an empty string is none too, on read)."""
    return None if value == "" else value


def _hash(path: str, value) -> str:
    try:
        return json_hash(value)
    except CANONICAL_ERRORS as exc:  # rfc8785 refuses the value, or it nests too deeply
        raise Unbound(path, f"cannot be canonicalised ({type(exc).__name__}: {exc})") from None


def _named(events, i: int) -> str:
    return f"events[{i}] ({events[i]['code']})"


def _row(section: str, k: int, what: str) -> str:
    return f"{section}[{k}] ({what})"


def _differs(path: str, field: str, value, events, i: int, recorded, event_index=None):
    shown = "unset" if value is None else repr(value)
    raise Unbound(f"{path}.{field}", f"is {shown}, but {_named(events, i)} records "
                                     f"{'none' if recorded is None else repr(recorded)}",
                  event_index=i if event_index is None else event_index)


def check_bound(*, run: dict, steps: list, decisions: list, gates: list, events: list,
                hashed_outputs: bool = False) -> None:
    """Raise `Unbound` at the first fact not bound to its event (or event to its fact).

    `hashed_outputs`: the caller has already checked each finished step's input and output
    against its receipt (verify_pack does), so they are not hashed again here."""
    by_code: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        by_code.setdefault(event["code"], []).append(i)
    _check_run(run, events, by_code)
    _check_steps(steps, events, hashed_outputs)
    _check_decisions(decisions, events, by_code)
    _check_gates(gates, events)


def _check_run(run: dict, events, by_code) -> None:
    changes = by_code.get("FC-RUN-002", [])
    if changes:
        i = changes[-1]
        data = events[i]["data"]
        if run.get("status") != data.get("to"):
            _differs("run", "status", run.get("status"), events, i, data.get("to"))
        if "status_reason" in run and (run["status_reason"] or "") != (
                data.get("reason") or "")[:500]:
            _differs("run", "status_reason", run["status_reason"], events, i,
                     data.get("reason"))
    elif run.get("status") != "pending":
        raise Unbound("run.status", f"is {run.get('status')!r}, but no FC-RUN-002 event "
                                    "records a status change")
    seals = by_code.get("FC-RUN-003", [])
    if not seals:
        if run.get("output") is not None:
            raise Unbound("run.output", "is set, but no FC-RUN-003 event seals the run")
        return
    i = seals[-1]
    recorded = events[i]["data"].get("output_hash")
    # Runs sealed before the seal carried output_hash: their output is bound by nothing.
    if "output_hash" not in events[i]["data"]:
        return
    output = run.get("output")
    if (_hash("run.output", output) if output is not None else None) != recorded:
        raise Unbound("run.output", f"does not hash to the output_hash sealed in "
                                    f"{_named(events, i)}", event_index=i)


def _step_states(events) -> tuple[dict, dict]:
    """({step_id: (index of its last event, status it records, attempt)},
    {(step_id, attempt): index of its last FC-STEP-001})."""
    states, started = {}, {}
    for i, event in enumerate(events):
        code, data = event["code"], event["data"]
        step_id = data.get("step_id")
        if code in _STEP_CODES:
            status = data.get("status") if code == "FC-STEP-005" else _STEP_STATUS[code]
            attempt = data.get("attempt")
            if attempt is None:  # FC-STEP-005 names no attempt: it closes the current one
                attempt = states.get(step_id, (None, None, 1))[2]
            states[step_id] = (i, status, attempt)
            if code == "FC-STEP-001":
                started[(step_id, attempt)] = i
        elif (code == "FC-GATE-001" and step_id is not None
              and data.get("source") in _HOLDING_SOURCES):
            states[step_id] = (i, "waiting", states.get(step_id, (None, None, 1))[2])
    return states, started


def _check_steps(steps: list, events, hashed_outputs: bool) -> None:
    states, started = _step_states(events)
    seen = set()
    for k, step in enumerate(steps):
        step_id = step.get("step_id")
        path = _row("steps", k, f"step {step_id}")
        seen.add(step_id)
        i, status, attempt = states.get(step_id, (None, "pending", 1))
        if step.get("status") != status:
            if i is None:
                raise Unbound(f"{path}.status", f"is {step.get('status')!r}, but no event "
                                                "records a change of this step")
            _differs(path, "status", step.get("status"), events, i, status)
        if i is None:
            continue
        if step.get("attempt") != attempt:
            _differs(path, "attempt", step.get("attempt"), events, i, attempt)
        _check_step_facts(path, step, status, events, i, hashed_outputs,
                          started.get((step_id, attempt)))
    for step_id, (i, _, _) in states.items():
        if step_id not in seen:
            raise Unbound(_named(events, i), f"records step {step_id}, which is not in "
                                             "steps", event_index=i)


def _check_step_facts(path, step, status, events, i, hashed_outputs, started) -> None:
    data = events[i]["data"]
    if started is not None and status in ("running", "succeeded", "failed"):
        recorded = events[started]["data"].get("input_hash")
        if none(step.get("input_hash")) != recorded:
            _differs(path, "input_hash", none(step.get("input_hash")), events, started,
                     recorded)
        if "input" in step and (status == "running" or not hashed_outputs) and _hash(
                f"{path}.input", step["input"]) != recorded:
            raise Unbound(f"{path}.input", f"does not hash to the input_hash of "
                                           f"{_named(events, started)}", event_index=started)
    if status in ("succeeded", "failed"):
        for field in ("output_hash", "receipt_hash"):
            if none(step.get(field)) != data.get(field):
                _differs(path, field, none(step.get(field)), events, i, data.get(field))
        if status == "failed":
            if step.get("output") is not None:
                raise Unbound(f"{path}.output", f"is set, but {_named(events, i)} records "
                                                "the step failed", event_index=i)
            if step.get("error") != data.get("error"):
                _differs(path, "error", step.get("error"), events, i, data.get("error"))
        else:
            if step.get("error") is not None:
                raise Unbound(f"{path}.error", f"is set, but {_named(events, i)} records "
                                               "the step succeeded", event_index=i)
            if not hashed_outputs and _hash(
                    f"{path}.output", step.get("output")) != data.get("output_hash"):
                raise Unbound(f"{path}.output", f"does not hash to the output_hash of "
                                                f"{_named(events, i)}", event_index=i)
    elif status in ("skipped", "cancelled"):
        recorded = {"code": status, "detail": data.get("reason")}
        if step.get("error") != recorded:
            _differs(path, "error", step.get("error"), events, i, recorded)


def _check_decisions(decisions: list, events, by_code) -> None:
    recorded: dict[tuple, list[int]] = {}
    for i in by_code.get("FC-POL-001", []):
        data = events[i]["data"]
        recorded.setdefault((data.get("step_id"), data.get("attempt")), []).append(i)
    for k, decision in enumerate(decisions):
        key = (decision.get("step_id"), decision.get("attempt"))
        path = _row("decisions", k, f"step {key[0]} attempt {key[1]}")
        pending = recorded.get(key)
        if not pending:
            raise Unbound(path, "no FC-POL-001 event records this decision")
        i = pending.pop(0)
        data = events[i]["data"]
        for field in DECISION_FIELDS:
            if decision.get(field) != data.get(field):
                _differs(path, field, decision.get(field), events, i, data.get(field))
    for key, left in recorded.items():
        if left:
            raise Unbound(_named(events, left[0]), f"records a decision for step {key[0]} "
                                                   f"attempt {key[1]} that is not in decisions",
                          event_index=left[0])


def _gate_events(events) -> dict:
    """{gate_id: {"opened": i, "outcome": i, "escalated": i, "review": i, "votes": {actor: i}}}"""
    gates: dict = {}
    for i, event in enumerate(events):
        code = event["code"]
        if code not in _GATE_CODES:
            continue
        data = event["data"]
        slot = gates.setdefault(data.get("gate_id"), {"votes": {}, "first": i})
        if code == "FC-GATE-001":
            slot["opened"] = i
        elif code == "FC-GATE-002":
            slot["votes"][event["actor"]] = i
        elif code == "FC-GATE-006":
            slot["review"] = i
        elif code == "FC-GATE-004" and data.get("action") == "escalated":
            slot["escalated"] = i
        else:
            slot["outcome"] = i
    return gates


def _check_gates(gates: list, events) -> None:
    recorded = _gate_events(events)
    for g, gate in enumerate(gates):
        gate_id = gate.get("gate_id")
        path = _row("gates", g, f"gate {gate_id}")
        slot = recorded.pop(gate_id, None)
        if slot is None or "opened" not in slot:
            raise Unbound(path, "no FC-GATE-001 event opened this gate")
        _check_gate_opened(path, gate, events, slot["opened"])
        _check_gate_outcome(path, gate, events, slot)
        _check_votes(path, gate, events, slot["votes"])
    for gate_id, slot in recorded.items():
        raise Unbound(_named(events, slot["first"]), f"records gate {gate_id}, which is not "
                                                     "in gates", event_index=slot["first"])


def _check_gate_opened(path, gate, events, i) -> None:
    event = events[i]
    if gate.get("requested_by") != event["actor"]:
        _differs(path, "requested_by", gate.get("requested_by"), events, i, event["actor"])
    for field, key in GATE_OPENED_FIELDS:
        if field in gate and gate[field] != event["data"].get(key):
            _differs(path, field, gate[field], events, i, event["data"].get(key))


def _check_gate_outcome(path, gate, events, slot) -> None:
    i = slot.get("outcome")
    status = events[i]["data"].get("status") if i is not None else "open"
    resolution = gate.get("resolution") or {}
    if gate.get("status") != status:
        _differs(path, "status", gate.get("status"), events,
                 i if i is not None else slot["opened"], status)
    if i is not None:
        if resolution.get("by") != events[i]["actor"]:
            _differs(path, "resolution.by", resolution.get("by"), events, i, events[i]["actor"])
        if status == "overridden" and resolution.get("justification") != events[i][
                "data"].get("justification"):
            _differs(path, "resolution.justification", resolution.get("justification"),
                     events, i, events[i]["data"].get("justification"))
    if bool(resolution.get("escalated")) != ("escalated" in slot):
        where = slot.get("escalated", slot["opened"])
        _differs(path, "resolution.escalated", resolution.get("escalated"), events, where,
                 "escalated" in slot)
    review = slot.get("review")
    if review is None:
        for field in ("reviewed_by", "review_note"):
            if gate.get(field):
                raise Unbound(f"{path}.{field}", "is set, but no FC-GATE-006 event records "
                                                 "a review of this gate")
        if "needs_review" in gate and bool(gate["needs_review"]) != (status == "overridden"):
            _differs(path, "needs_review", gate["needs_review"], events,
                     i if i is not None else slot["opened"], status)
        return
    event = events[review]
    if gate.get("reviewed_by") != event["actor"]:
        _differs(path, "reviewed_by", none(gate.get("reviewed_by")), events, review,
                 event["actor"])
    if gate.get("review_note") != event["data"].get("note"):
        _differs(path, "review_note", none(gate.get("review_note")), events, review,
                 event["data"].get("note"))
    if gate.get("needs_review"):
        _differs(path, "needs_review", True, events, review, "reviewed")


def _check_votes(path, gate, events, recorded: dict) -> None:
    recorded = dict(recorded)
    for a, vote in enumerate(gate.get("approvals") or []):
        actor = vote.get("actor")
        where = f"{path}.approvals[{a}] (vote of {actor})"
        i = recorded.pop(actor, None)
        if i is None:
            raise Unbound(where, "no FC-GATE-002 event records this vote")
        data = events[i]["data"]
        for field, key in (("decision", "vote"), ("comment", "comment"), ("input", "input")):
            if vote.get(field) != data.get(key):
                _differs(where, field, vote.get(field), events, i, data.get(key))
    for actor, i in recorded.items():
        raise Unbound(_named(events, i), f"records a vote by {actor} that is not in "
                                         f"{path}.approvals", event_index=i)


# Fields of a pack whose "none" is spelled null (never ""), by section.
NULL_SPELLED = {"run": ("workflow_hash",),
                "steps": ("decision", "input_hash", "output_hash", "receipt_hash",
                          "prev_receipt_hash"),
                "gates": ("reviewed_by", "review_note"),
                "receipts": ("output_hash",)}


def check_spelling(pack: dict) -> None:
    """Raise `Unbound` at the first field of `NULL_SPELLED` that spells "none" as ""."""
    for section, fields in NULL_SPELLED.items():
        rows = pack.get(section)
        for k, row in enumerate(rows if isinstance(rows, list) else [rows]):
            for field in fields:
                if isinstance(row, dict) and row.get(field) == "":
                    path = f"{section}[{k}].{field}" if isinstance(rows, list) \
                        else f"{section}.{field}"
                    raise Unbound(path, 'is "": the format spells none as null')
