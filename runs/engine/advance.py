"""The engine: every step is a decision, and the run moves in as few transactions as it can.

`advance_locked` is the only place that starts steps. Under the run lock it releases
waiting steps whose gates are approved, completes the run when every step is done, and
otherwise asks for a policy decision on each ready step (`after` all succeeded or skipped,
retry backoff over) and then:

- allow  → the step starts (`FC-STEP-001`); an internal step (`noop`, `sleep`, `http`,
           `python:…`) is executed by a Celery task enqueued on commit, an `external` step
           waits for its executor's report;
- flag   → a gate opens (`FC-GATE-001`), the step waits and the run pauses;
- deny   → the run fails closed: steps not started are cancelled, open gates cancelled.

Recording a step's result (`step_record_result`, a compare-and-set on status=running and
the attempt) advances the run in the same transaction: one commit per step in a straight
line. A failed attempt is retried after a backoff when the step's `retry` allows; a final
failure fails the run. Every run that ends is sealed (`FC-RUN-003`).
"""

import uuid

from django.utils import timezone
from django_fsm import can_proceed

from audit.codes import Code
from audit.hashing import GENESIS_HASH, json_hash
from audit.services import audit_append, audit_stream_head
from fcore.actors import ENGINE
from fcore.errors import InvalidTransition
from fcore.metrics import RUNS_ENDED, count_on_commit
from gates.gate_settings import GateSettingsError, gate_settings_clean
from gates.models import Gate, GateStatus
from gates.notify import run_notify
from gates.policies import Decision
from gates.services import gate_cancel, gate_open

from ..expressions import ExpressionFailed
from ..handlers import StepError
from ..models import RUN_TERMINAL, STEP_DONE, Run, RunStatus, StepRun, StepStatus
from ..receipts import workflow_hash
from .children import (
    WORKFLOW_STEP,
    ChildRefused,
    child_event_data,
    child_insert,
    child_plan,
    child_result,
    children_ended,
    children_live,
)
from .decisions import step_decide
from .dispatch import enqueue_advance
from .lock import run_changed, run_lock, step_changed
from .maps import (
    map_fail,
    map_settle,
    ready_within_limit,
    run_output,
    step_fail_unstarted,
    step_prepare,
)
from .steps import (
    run_policies,
    step_close,
    step_finish,
    step_input,
    step_plan,
    step_retry,
    step_retry_due,
    step_start,
    steps_of,
)

# --- runs --------------------------------------------------------------------------------

_RUN_FIELDS = ("status", "status_reason", "paused_for_gate", "started_at", "ended_at",
               "output", "current_step", "step_index", "updated_at")


def run_transition(run: Run, name: str, *, actor: str, reason: str = "",
                   for_gate: bool = False) -> None:
    """Apply one FSM transition to a locked run, save it and record `FC-RUN-002`.

    `for_gate` marks a pause made by a gate (`Run.paused_for_gate`); every other
    transition clears the mark."""
    method = getattr(run, name)
    before = run.status
    if not can_proceed(method):
        allowed = [t.target for t in run.get_available_status_transitions()]
        raise InvalidTransition(obj=f"Run {run.run_id}", current=before, allowed=allowed)
    method()
    now = timezone.now()
    if run.status == RunStatus.RUNNING and run.started_at is None:
        run.started_at = now
    if run.status in RUN_TERMINAL:
        run.ended_at = now
        count_on_commit(RUNS_ENDED, run.status)
    run.status_reason = reason[:500]
    run.paused_for_gate = for_gate and run.status == RunStatus.PAUSED
    run_changed(run)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code=Code.RUN_STATUS,
                 actor=actor, data={"from": before, "to": run.status, "reason": reason})
    if run.status in RUN_TERMINAL and run.parent_run_id is not None:
        enqueue_advance(run.parent_run_id)  # a child ended: its parent's step settles


def run_end(run: Run, steps: dict[str, StepRun], name: str, *, actor: str,
            reason: str) -> None:
    """Fail or cancel a locked run: cancel open gates and the steps not started; a running
    step fails with `run_ended` (its worker notices at its next heartbeat and stops, and
    its late result is refused); then seal."""
    for gate in Gate.objects.select_for_update().filter(run=run, status=GateStatus.OPEN):
        gate_cancel(gate=gate, run=run, actor=actor, reason=f"run {name}: {reason}")
    for child_id in children_live(run, steps):  # lock order: parent, then child
        with run_lock(child_id) as child:
            if child.status not in RUN_TERMINAL:
                run_cancel(child, steps_of(child), actor=actor,
                           reason=f"parent run {run.run_id} {name}: {reason}"[:500])
    run_transition(run, name, actor=actor, reason=reason)
    for step in steps.values():
        if step.status in (StepStatus.PENDING, StepStatus.WAITING):
            step_close(run, step, "cancel", actor=actor, reason=reason)
        elif step.status == StepStatus.RUNNING:
            step_finish(run, steps, step, succeeded=False, output=None, actor=actor,
                        error={"code": StepError.RUN_ENDED.value, "detail": reason})
    run_seal(run, steps)


def run_fail(run: Run, steps: dict[str, StepRun], *, actor: str, reason: str) -> None:
    run_end(run, steps, "fail", actor=actor, reason=reason)


def run_cancel(run: Run, steps: dict[str, StepRun], *, actor: str, reason: str) -> None:
    run_end(run, steps, "cancel", actor=actor, reason=reason)


def run_seal(run: Run, steps: dict[str, StepRun]) -> None:
    """Compute and store the run's workflow_hash, and record `FC-RUN-003`, which also binds
    the run's output (`output_hash`, null when it has none)."""
    receipts = [s for s in steps.values() if s.receipt_hash]
    last_receipt = max(receipts, key=lambda s: s.receipt_seq).receipt_hash if receipts \
        else GENESIS_HASH
    head_seq, head_hash = audit_stream_head(run.stream_name)
    run.workflow_hash = workflow_hash(
        run_id=str(run.run_id), status=run.status, last_receipt_hash=last_receipt,
        stream=run.stream_name, head_seq=head_seq, head_hash=head_hash)
    run_changed(run)
    sealed = audit_append(tenant_id=run.tenant_id, stream=run.stream_name,
                          code=Code.RUN_SEALED, actor=ENGINE,
                          data={"workflow_hash": run.workflow_hash, "status": run.status,
                                "last_receipt_hash": last_receipt, "head_seq": head_seq,
                                "head_hash": head_hash,
                                "output_hash": json_hash(run.output)
                                if run.output is not None else None})
    run_notify(run=run, audit_event=sealed)  # run.completed/failed/cancelled webhooks


def _run_complete(run: Run, steps: dict[str, StepRun]) -> None:
    """The run's output is the definition's `output` resolved, or else the outputs of the
    steps nothing comes after (not a map's instances: their map step holds them)."""
    try:
        run.output = run_output(run, steps)
    except ExpressionFailed as exc:
        run_fail(run, steps, actor=ENGINE, reason=f"{exc.code} in the workflow output: {exc}")
        return
    if run.output is None:
        dependants = {a for s in steps.values() for a in s.after}
        run.output = {sid: s.output for sid, s in steps.items() if sid not in dependants
                      and s.status == StepStatus.SUCCEEDED and not s.map_parent}
    run_transition(run, "complete", actor=ENGINE, reason="all steps done")
    run_seal(run, steps)


# --- gates on steps ----------------------------------------------------------------------

def _gate_settings_for(step: StepRun, decision: Decision) -> dict:
    settings = dict(step.config.get("gate") or {})
    for key, value in decision.gate.items():
        if key == "required_approvals":
            settings[key] = max(int(settings.get(key, 1)), int(value))
        else:
            settings.setdefault(key, value)
    return gate_settings_clean(settings)


def run_paused_for_gate(run: Run) -> bool:
    """Paused by a gate (not by an operator): the last gate's approval resumes it."""
    return run.status == RunStatus.PAUSED and run.paused_for_gate


def _step_release(run: Run, steps: dict[str, StepRun], step: StepRun) -> None:
    """Start a waiting step once every gate on it is approved."""
    gates = list(Gate.objects.filter(step_run=step).order_by("created_at", "id"))
    if not gates or any(g.status not in (GateStatus.APPROVED, GateStatus.OVERRIDDEN)
                        for g in gates):
        return
    gate = gates[-1]
    actor = (gate.resolution or {}).get("by", ENGINE)
    if step.step_type != "approval":
        _step_begin(run, steps, step, actor=actor)
        return
    gate_input = (gate.resolution or {}).get("input")
    # the input its decision resolved (an approval step's expressions are not run again)
    step.input = dict(step.input) if step.input is not None else step_input(run, step)
    if gate_input is not None:
        step.input["approval_input"] = gate_input
    step_start(run, step, actor=actor)
    step_finish(run, steps, step, succeeded=True, actor=actor,
                output={"gate_id": gate.id, "status": gate.status,
                        "votes": (gate.resolution or {}).get("votes", []), "input": gate_input})


def _step_hold_at_gate(run: Run, step: StepRun, decision: Decision) -> None:
    gate_settings = _gate_settings_for(step, decision)  # may raise GateSettingsError
    step.wait()
    step_changed(run, step)
    run.current_step, run.step_index = step.step_id, step.index
    if decision.decision == "flag":
        source, reason = "policy", decision.reason
    else:
        source, reason = "approval_step", f"approval required at {step.step_id}"
    gate_open(run=run, step_run=step, source=source, reason=reason, requested_by=ENGINE,
              settings=gate_settings)
    if run.status == RunStatus.RUNNING:
        run_transition(run, "pause", actor=ENGINE, for_gate=True,
                       reason=f"gate at {step.step_id}: {reason}")


# --- advancing ---------------------------------------------------------------------------

def _ready(steps: dict[str, StepRun], now) -> list[StepRun]:
    return [s for s in steps.values() if s.status == StepStatus.PENDING
            and (s.not_before is None or s.not_before <= now)
            and all(steps[a].status in STEP_DONE for a in s.after)]


def advance_locked(run: Run, steps: dict[str, StepRun]) -> None:
    """Move a locked, running run as far as it can go now."""
    before = (run.current_step, run.step_index)
    for step in steps.values():  # an approved approval step finishes here, so its
        if step.status == StepStatus.WAITING:  # dependants are ready just below
            _step_release(run, steps, step)
    if run.status != RunStatus.RUNNING:  # a released workflow step's child was refused
        return
    if _advance_ready(run, steps) and (run.current_step, run.step_index) != before:
        run_changed(run)


def _advance_ready(run: Run, steps: dict[str, StepRun]) -> bool:
    """Complete the run, or decide its ready steps; again while a condition skipped a
    step or a map expanded (their dependants or instances may be ready now). False when
    the run stopped (completed, failed, paused)."""
    while True:
        if all(s.status in STEP_DONE for s in steps.values()):
            _run_complete(run, steps)
            return False
        ready = _ready(steps, timezone.now())
        if any(s.map_parent for s in ready):
            ready = ready_within_limit(ready, steps)
        if not ready:
            return True
        moved = _decide_ready(run, steps, ready)
        if moved is None:
            return False
        if not moved:
            return True


def _decide_ready(run: Run, steps: dict[str, StepRun], ready: list[StepRun]) -> bool | None:
    """Decide and start the ready steps. None when the run stopped; True when a step was
    skipped or expanded instead (look for ready steps again)."""
    enabled, moved = run_policies(run), False
    for step in ready:
        try:
            plan = step_plan(run, step)
            if plan is not None and not step_prepare(run, steps, step, plan):
                moved = True
                continue
            decision = step_decide(run, step, enabled)
            if decision.decision == "deny":
                step_close(run, step, "cancel", actor=ENGINE,
                           reason=f"denied by policy: {decision.reason}")
                run_fail(run, steps, actor=ENGINE,
                         reason=f"policy deny at {step.step_id}: {decision.reason}")
                return None
            if decision.decision == "flag" or step.step_type == "approval":
                _step_hold_at_gate(run, step, decision)
                return None  # a paused run starts nothing more
        except GateSettingsError as exc:  # a flag rule's gate block is unusable
            step_close(run, step, "cancel", actor=ENGINE, reason=f"policy_error: {exc}")
            run_fail(run, steps, actor=ENGINE,
                     reason=f"policy_error at {step.step_id}: gate settings: {exc}")
            return None
        except ExpressionFailed as exc:  # fails closed, never retried
            step_fail_unstarted(run, steps, step, exc)
            run_fail(run, steps, actor=ENGINE, reason=f"{exc.code} at {step.step_id}: {exc}")
            return None
        if not _step_begin(run, steps, step):
            return None
    return moved


def _step_begin(run: Run, steps: dict[str, StepRun], step: StepRun, *,
                actor: str = ENGINE) -> bool:
    """Start a step whose decision allowed it; a workflow step with its child run
    (`children`). False when the child cannot start: the step failed before it started
    and the run failed closed."""
    if step.step_type != WORKFLOW_STEP:
        step_start(run, step, actor=actor)
        return True
    try:
        plan = child_plan(run, step)
    except ChildRefused as exc:
        step_fail_unstarted(run, steps, step, exc)
        run_fail(run, steps, actor=ENGINE, reason=f"{exc.code} at {step.step_id}: {exc}")
        return False
    child_id = uuid.uuid4()
    step_start(run, step, actor=actor, child=child_event_data(plan[0], child_id))
    child_insert(run, step, plan, child_id)
    return True


def _children_settle(run: Run, steps: dict[str, StepRun]) -> None:
    """Record the result of every running workflow step whose child run ended."""
    for step, child in children_ended(run, steps):
        if run.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
            return
        succeeded, output, error = child_result(child)
        step_conclude(run, steps, step, succeeded=succeeded, output=output, actor=ENGINE,
                      error=error)


def run_start(run: Run, steps: dict[str, StepRun]) -> None:
    """pending → running, and its first steps decided and started."""
    run_transition(run, "start", actor=ENGINE, reason="run started")
    advance_locked(run, steps)


def run_advance(run_id) -> None:
    """Move a run as far as it can go now. Safe to call any number of times."""
    with run_lock(run_id) as run:
        if run.status == RunStatus.PENDING:  # a child run, or one from before runs were
            run_start(run, steps_of(run))    # born running
        elif run.status in (RunStatus.RUNNING, RunStatus.PAUSED):
            steps = steps_of(run)
            _children_settle(run, steps)  # a child that ended while the parent was paused
            if run.status == RunStatus.RUNNING:  # is recorded; the parent moves on later
                advance_locked(run, steps)


def step_conclude(run: Run, steps: dict[str, StepRun], step: StepRun, *, succeeded: bool,
                  output, actor: str, error=None) -> None:
    """Record the result of a running step's attempt under the run lock, then move on:
    advance (success), retry after a backoff, or fail the run (final failure)."""
    if succeeded:
        step_finish(run, steps, step, succeeded=True, output=output, actor=actor)
        if step.map_parent:
            map_settle(run, steps, steps[step.map_parent])
        if run.status == RunStatus.RUNNING:
            advance_locked(run, steps)
        return
    retry = step_retry_due(step, error)
    step_finish(run, steps, step, succeeded=False, output=None, actor=actor, error=error,
                receipt=not retry)
    if retry and run.status in (RunStatus.RUNNING, RunStatus.PAUSED):
        enqueue_advance(run.run_id, countdown=step_retry(run, step, actor=ENGINE))
    elif run.status in (RunStatus.RUNNING, RunStatus.PAUSED):
        if step.map_parent:
            map_fail(run, steps, step)
        run_fail(run, steps, actor=actor, reason=f"step {step.step_id} failed")


def step_record_result(run_id, step_id: str, attempt: int, *, succeeded: bool, output,
                       actor: str, error=None) -> bool:
    """Compare-and-set: record only while the step is running with the same attempt."""
    with run_lock(run_id) as run:
        steps = steps_of(run)
        step = steps.get(step_id)
        if step is None or step.status != StepStatus.RUNNING or step.attempt != attempt:
            return False
        step_conclude(run, steps, step, succeeded=succeeded, output=output, actor=actor,
                      error=error)
        return True
