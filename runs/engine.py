"""The engine: every step is a decision.

`run_advance` is the only place that starts steps. Under the run lock it looks at the steps
whose dependencies (`after`) have all succeeded or been skipped, asks `gates` for a policy
decision on each (recording `FC-POL-001`), and then:

- allow  → the step starts (`FC-STEP-001`); an internal step is executed by a Celery task
           enqueued on commit, an `external` step waits for its executor's report;
- flag   → a gate opens (`FC-GATE-001`), the step waits and the run pauses;
- deny   → the run fails closed: steps not started are cancelled, open gates cancelled.

`approval` steps always open a gate. When every step has succeeded or was skipped the run
completes. Every run that ends is sealed: its `workflow_hash` covers the last receipt, the
final status and the stream head (`FC-RUN-003`).

`run_advance`, `step_execute` and `step_record_result` take the run lock themselves; every
other function here expects the caller to hold it. Recording a result is a compare-and-set
on (status=running, attempt): a result delivered twice is recorded once.
"""

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from audit.hashing import GENESIS_HASH, json_hash
from audit.services import audit_append, audit_stream_head
from fcore.actors import ENGINE, Actor
from fcore.errors import InvalidTransition
from gates.gate_settings import GateSettingsError, gate_settings_clean
from gates.models import Gate, GateStatus, PolicyDecision
from gates.policies import policies_applicable
from gates.policy import Decision, evaluate
from gates.services import gate_cancel, gate_open

from .definitions import INTERNAL_TYPES
from .locks import run_lock
from .models import RUN_TERMINAL, STEP_DONE, Run, RunStatus, StepRun, StepStatus
from .receipts import receipt_hash, workflow_hash

log = logging.getLogger(__name__)


def _send(task, *args) -> None:
    """Enqueue after commit. The change is already committed then, so a broker that is
    down must not turn it into an error: it is logged, and the beat sweeper re-drives the
    run (`runs_sweep_stalled`)."""
    try:
        task.delay(*args)
    except Exception:  # noqa: BLE001 - any broker failure; the state is safe in the database
        log.exception("could not enqueue %s%r; the sweeper will re-drive it", task.name, args)


def enqueue_advance(run_id) -> None:
    from .tasks import advance_run

    transaction.on_commit(lambda: _send(advance_run, str(run_id)))


def enqueue_execute(step: StepRun) -> None:
    from .tasks import execute_step

    args = (str(step.run_id), step.step_id, step.attempt)
    transaction.on_commit(lambda: _send(execute_step, *args))


# --- runs --------------------------------------------------------------------------------

def run_transition(run: Run, name: str, *, actor: str, reason: str = "") -> None:
    """Apply one FSM transition to a locked run, save it and record `FC-RUN-002`."""
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
    run.status_reason = reason[:500]
    run.save()
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-RUN-002",
                 actor=actor, data={"from": before, "to": run.status, "reason": reason})


def steps_locked(run: Run) -> dict[str, StepRun]:
    return {s.step_id: s for s in run.steps.select_for_update().order_by("index")}


def run_end(run: Run, steps: dict[str, StepRun], name: str, *, actor: str,
             reason: str) -> None:
    """Fail or cancel a locked run: close every step that has not ended, cancel open
    gates, then seal."""
    for gate in Gate.objects.select_for_update().filter(run=run, status=GateStatus.OPEN):
        gate_cancel(gate=gate, run=run, actor=actor, reason=f"run {name}: {reason}")
    run_transition(run, name, actor=actor, reason=reason)
    for step in steps.values():
        if step.status in (StepStatus.PENDING, StepStatus.WAITING):
            step_close(run, step, "cancel", actor=actor, reason=reason)
        elif step.status == StepStatus.RUNNING:
            step_finish(run, step, succeeded=False, output=None, actor=actor,
                        error={"code": "run_ended", "detail": reason})
    run_seal(run)


def run_fail(run: Run, steps: dict[str, StepRun], *, actor: str, reason: str) -> None:
    run_end(run, steps, "fail", actor=actor, reason=reason)


def run_cancel(run: Run, steps: dict[str, StepRun], *, actor: str, reason: str) -> None:
    run_end(run, steps, "cancel", actor=actor, reason=reason)


def run_seal(run: Run) -> None:
    """Compute and store the run's workflow_hash, and record `FC-RUN-003`."""
    last = run.steps.exclude(receipt_hash="").order_by("-receipt_seq").first()
    last_receipt = last.receipt_hash if last else GENESIS_HASH
    head_seq, head_hash = audit_stream_head(run.stream_name)
    run.workflow_hash = workflow_hash(
        run_id=str(run.run_id), status=run.status, last_receipt_hash=last_receipt,
        stream=run.stream_name, head_seq=head_seq, head_hash=head_hash)
    run.save(update_fields=["workflow_hash", "updated_at"])
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-RUN-003",
                 actor=ENGINE,
                 data={"workflow_hash": run.workflow_hash, "status": run.status,
                       "last_receipt_hash": last_receipt, "head_seq": head_seq,
                       "head_hash": head_hash})


def _run_complete(run: Run, steps: dict[str, StepRun]) -> None:
    dependants = {a for s in steps.values() for a in s.after}
    run.output = {sid: s.output for sid, s in steps.items()
                  if sid not in dependants and s.status == StepStatus.SUCCEEDED}
    run_transition(run, "complete", actor=ENGINE, reason="all steps done")
    run_seal(run)


# --- steps -------------------------------------------------------------------------------

def step_input(run: Run, step: StepRun) -> dict:
    """A step's input: the run's input, overlaid with the step's static `input`."""
    return {**run.input, **(step.config.get("input") or {})}


def step_start(run: Run, step: StepRun, *, actor: str = ENGINE) -> None:
    """pending|waiting → running, `FC-STEP-001`; an internal step is enqueued."""
    step.start()
    step.started_at = timezone.now()
    if step.input is None:
        step.input = step_input(run, step)
    step.input_hash = json_hash(step.input)
    step.save()
    run.current_step, run.step_index = step.step_id, step.index
    run.save(update_fields=["current_step", "step_index", "updated_at"])
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-STEP-001",
                 actor=actor, data={"step_id": step.step_id, "step_type": step.step_type,
                                    "attempt": step.attempt, "input_hash": step.input_hash})
    if step.step_type in INTERNAL_TYPES:
        enqueue_execute(step)


def step_finish(run: Run, step: StepRun, *, succeeded: bool, output, actor: str,
                error=None) -> None:
    """running → succeeded|failed with its receipt, `FC-STEP-002` or `FC-STEP-003`."""
    step.succeed() if succeeded else step.fail()
    step.ended_at = timezone.now()
    step.output = output if succeeded else None
    step.error = None if succeeded else error
    step.output_hash = json_hash(step.output)
    previous = (run.steps.exclude(receipt_hash="").exclude(pk=step.pk)
                .order_by("-receipt_seq").first())
    step.receipt_seq = (previous.receipt_seq if previous else 0) + 1
    step.prev_receipt_hash = previous.receipt_hash if previous else GENESIS_HASH
    step.receipt_hash = receipt_hash(
        run_id=str(run.run_id), step_id=step.step_id, attempt=step.attempt,
        input_hash=step.input_hash, output_hash=step.output_hash, decision=step.decision,
        policy_versions=step.policy_versions, prev_receipt_hash=step.prev_receipt_hash)
    step.save()
    data = {"step_id": step.step_id, "attempt": step.attempt, "output_hash": step.output_hash,
            "receipt_hash": step.receipt_hash}
    if not succeeded:
        data["error"] = error
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name,
                 code="FC-STEP-002" if succeeded else "FC-STEP-003", actor=actor, data=data)


def step_close(run: Run, step: StepRun, how: str, *, actor: str, reason: str) -> None:
    """pending|waiting → skipped|cancelled, `FC-STEP-005`."""
    getattr(step, how)()
    step.ended_at = timezone.now()
    step.error = {"code": step.status, "detail": reason}
    step.save()
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-STEP-005",
                 actor=actor, data={"step_id": step.step_id, "status": step.status,
                                    "reason": reason})


# --- decisions ---------------------------------------------------------------------------

def decision_context(run: Run, step: StepRun, now) -> dict:
    """What a rule sees (DESIGN §6). `now` is a datetime (a CEL timestamp)."""
    definition = run.definition
    return {
        "run": {"id": str(run.run_id), "workflow": definition.name,
                "version": definition.version, "input": run.input,
                "created_by": run.created_by, "metadata": run.metadata},
        "step": {"id": step.step_id, "type": step.step_type, "index": step.index,
                 "config": step.config, "attempt": step.attempt},
        "input": step_input(run, step),
        "actor": Actor.parse(run.created_by).as_context(),
        "tenant": {"id": run.tenant.slug},
        "now": now,
    }


def step_decide(run: Run, step: StepRun) -> Decision:
    """Evaluate the applicable policies for a step, store the decision, `FC-POL-001`."""
    now = timezone.now()
    context = decision_context(run, step, now)
    policies = policies_applicable(tenant=run.tenant, workflow=run.definition.name,
                                   step_type=step.step_type)
    decision = evaluate(policies, context,
                        time_limit_s=settings.FCORE_POLICY_TIME_LIMIT_MS / 1000)
    PolicyDecision.objects.create(
        tenant_id=run.tenant_id, step_run=step, attempt=step.attempt,
        decision=decision.decision, reason=decision.reason, policy_id=decision.policy_id,
        policy_version=decision.policy_version, tier=decision.tier,
        rules_triggered=decision.rules_triggered, policies=decision.policies,
        context={**context, "now": now.isoformat()}, evaluated_at=now,
        evaluation_us=decision.evaluation_us)
    step.decision = decision.decision
    step.policy_versions = decision.policy_versions
    step.save(update_fields=["decision", "policy_versions"])
    audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code="FC-POL-001", actor=ENGINE,
        data={"step_id": step.step_id, "attempt": step.attempt, "decision": decision.decision,
              "reason": decision.reason, "policy_id": decision.policy_id,
              "policy_version": decision.policy_version, "tier": decision.tier,
              "rules_triggered": decision.rules_triggered,
              "policy_versions": decision.policy_versions},
    )
    return decision


def _gate_settings_for(step: StepRun, decision: Decision) -> dict:
    settings = dict(step.config.get("gate") or {})
    for key, value in decision.gate.items():
        if key == "required_approvals":
            settings[key] = max(int(settings.get(key, 1)), int(value))
        else:
            settings.setdefault(key, value)
    return gate_settings_clean(settings)


GATE_PAUSE_PREFIX = "gate"


def run_paused_for_gate(run: Run) -> bool:
    """Paused by a gate (not by an operator): the last gate's approval resumes it."""
    return run.status == RunStatus.PAUSED and run.status_reason.startswith(GATE_PAUSE_PREFIX)


def _step_release(run: Run, step: StepRun) -> None:
    """Start a waiting step once every gate on it is approved."""
    gates = list(Gate.objects.filter(step_run=step).order_by("created_at", "id"))
    if not gates or any(g.status not in (GateStatus.APPROVED, GateStatus.OVERRIDDEN)
                        for g in gates):
        return
    gate = gates[-1]
    actor = (gate.resolution or {}).get("by", ENGINE)
    if step.step_type != "approval":
        step_start(run, step, actor=actor)
        return
    gate_input = (gate.resolution or {}).get("input")
    step.input = step_input(run, step)
    if gate_input is not None:
        step.input["approval_input"] = gate_input
    step_start(run, step, actor=actor)
    step_finish(run, step, succeeded=True, actor=actor,
                output={"gate_id": gate.id, "status": gate.status,
                        "votes": (gate.resolution or {}).get("votes", []), "input": gate_input})


def _step_hold_at_gate(run: Run, step: StepRun, decision: Decision) -> None:
    step.wait()
    step.save()
    run.current_step, run.step_index = step.step_id, step.index
    run.save(update_fields=["current_step", "step_index", "updated_at"])
    if decision.decision == "flag":
        source, reason = "policy", decision.reason
    else:
        source, reason = "approval_step", f"approval required at {step.step_id}"
    gate_open(run=run, step_run=step, source=source, reason=reason, requested_by=ENGINE,
              settings=_gate_settings_for(step, decision))
    if run.status == RunStatus.RUNNING:
        run_transition(run, "pause", actor=ENGINE,
                       reason=f"{GATE_PAUSE_PREFIX} at {step.step_id}: {reason}")


# --- advancing ---------------------------------------------------------------------------

def run_advance(run_id) -> None:
    """Move a run as far as it can go now. Safe to call any number of times."""
    with run_lock(run_id) as run:
        if run.status == RunStatus.PENDING:
            run_transition(run, "start", actor=ENGINE, reason="run started")
        if run.status != RunStatus.RUNNING:
            return
        steps = steps_locked(run)
        for step in steps.values():  # an approved approval step finishes here, so its
            if step.status == StepStatus.WAITING:  # dependants are ready just below
                _step_release(run, step)
        if all(s.status in STEP_DONE for s in steps.values()):
            _run_complete(run, steps)
            return
        ready = [s for s in steps.values() if s.status == StepStatus.PENDING
                 and all(steps[a].status in STEP_DONE for a in s.after)]
        for step in ready:
            try:
                decision = step_decide(run, step)
                if decision.decision == "deny":
                    step_close(run, step, "cancel", actor=ENGINE,
                               reason=f"denied by policy: {decision.reason}")
                    run_fail(run, steps, actor=ENGINE,
                             reason=f"policy deny at {step.step_id}: {decision.reason}")
                    return
                if decision.decision == "flag" or step.step_type == "approval":
                    _step_hold_at_gate(run, step, decision)
                    return  # a paused run starts nothing more
            except GateSettingsError as exc:  # a flag rule's gate block is unusable
                step_close(run, step, "cancel", actor=ENGINE, reason=f"policy_error: {exc}")
                run_fail(run, steps, actor=ENGINE,
                         reason=f"policy_error at {step.step_id}: gate settings: {exc}")
                return
            step_start(run, step)


def step_execute(run_id, step_id: str, attempt: int) -> None:
    """Execute an internal step (delivered at least once) and record its result once."""
    step = (StepRun.objects.filter(run_id=run_id, step_id=step_id, attempt=attempt,
                                   status=StepStatus.RUNNING).first())
    if step is None:
        return  # already recorded, or superseded: a redelivery
    output = {}  # noop; other internal types arrive with the durable-engine work
    step_record_result(run_id, step_id, attempt, succeeded=True, output=output, actor=ENGINE)


def step_record_result(run_id, step_id: str, attempt: int, *, succeeded: bool, output,
                       actor: str, error=None) -> bool:
    """Compare-and-set: record only while the step is running with the same attempt."""
    with run_lock(run_id) as run:
        steps = steps_locked(run)
        step = steps.get(step_id)
        if step is None or step.status != StepStatus.RUNNING or step.attempt != attempt:
            return False
        step_finish(run, step, succeeded=succeeded, output=output, actor=actor, error=error)
        if succeeded:
            enqueue_advance(run.run_id)
        elif run.status in (RunStatus.RUNNING, RunStatus.PAUSED):
            run_fail(run, steps, actor=actor, reason=f"step {step_id} failed")
        return True
