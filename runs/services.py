"""Run services: the entry points the API, the console, commands and tasks call.

Each one owns its transaction (through `run_lock`), checks the transition is allowed under
the lock, changes state, records the audit events, and enqueues follow-up work on commit.
Where a gate's resolution moves a run, it happens here (lock order: run → gate → stream).
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.codes import Code
from audit.hashing import json_hash
from audit.services import audit_append
from fcore.actors import SCHEDULER
from fcore.errors import BadRequest, Conflict, ErrorCode, Forbidden, InvalidTransition, NotFound
from fcore.jsonlimits import json_problem
from fcore.rows import Rows
from gates.gate_settings import GateSettingsError, gate_settings_clean
from gates.models import OVERRIDE_PERMISSION, REVIEW_PERMISSION, Gate, GateStatus
from gates.notify.links import LinkClaim, link_consume
from gates.services import (
    Voter,
    gate_escalate,
    gate_expire,
    gate_open,
    gate_override,
    gate_override_review,
    gate_vote,
)

from . import claims, engine
from .definitions import is_external
from .engine import parse_gate_id, run_definition, run_held_new, run_insert, run_lock
from .models import Run, RunStatus, StepStatus

OPERATOR_TARGETS = {
    RunStatus.PAUSED: "pause",
    RunStatus.RUNNING: "resume",
    RunStatus.CANCELLED: "cancel",
    RunStatus.FAILED: "fail",
}


def run_create(*, tenant, workflow: str, input: dict, actor: str, version: int | None = None,
               idempotency_key: str | None = None, metadata: dict | None = None,
               actor_key: str = "", schedule: str | None = None) -> tuple[Run, bool]:
    """Create a run of the pinned definition version; returns (run, created).

    `actor_key` is the key id of the API client acting (four-eyes per key); `schedule`
    the name of the schedule starting it (beat), recorded in `FC-RUN-001`.

    A replayed idempotency key with the same request returns the first run; with a
    different request it is a 409 `idempotency_conflict`.
    """
    problem = json_problem(input) or json_problem(metadata or {})
    if not isinstance(input, dict) or problem:
        raise BadRequest("The run input must be a JSON object that can be hashed.",
                         code=ErrorCode.INVALID, errors={"input": [problem or "must be an object"]})
    definition, policies = run_definition(tenant, workflow, version)
    request_hash = json_hash({"workflow": workflow, "version": version, "input": input,
                              "metadata": metadata or {}})
    # A replayed key is found by the unique (tenant, idempotency key) constraint: the
    # insert fails and its transaction rolls back (a fresh key, the usual case, costs no
    # read for it).
    try:
        with transaction.atomic():
            run, stream, steps = run_insert(tenant=tenant, definition=definition, input=input,
                                            metadata=metadata or {}, actor=actor,
                                            actor_key=actor_key,
                                            idempotency_key=idempotency_key or None,
                                            request_hash=request_hash)
            with run_held_new(run, steps, stream, policies):
                audit_append(
                    tenant_id=tenant.id, stream=run.stream_name, code=Code.RUN_CREATED,
                    actor=actor,
                    data={"run_id": str(run.run_id), "workflow": definition.name,
                          "version": definition.version, "input_hash": json_hash(input),
                          "idempotency_key": idempotency_key or None,
                          "key": actor_key or None,
                          "steps": [s["id"] for s in definition.steps],
                          **({"schedule": schedule} if schedule else {})})
                # Born running: the first steps are decided in the creating transaction
                # (nobody else sees the run before it commits).
                engine.run_start(run, engine.steps_of(run))
    except IntegrityError:
        existing = idempotency_key and _replayed(tenant, idempotency_key, request_hash)
        if existing:
            return existing, False
        raise
    return run, True


def _replayed(tenant, key: str, request_hash: str) -> Run | None:
    run = Run.objects.for_tenant(tenant).filter(idempotency_key=key).first()
    if run and run.request_hash != request_hash:
        raise Conflict("This idempotency key was used with a different request.",
                       code=ErrorCode.IDEMPOTENCY_CONFLICT, run_id=str(run.run_id))
    return run


def run_set_status(*, tenant, run_id, status: str, actor: str, reason: str = "") -> Run:
    """Operator change: pause, resume, cancel or fail a run (FSM-checked)."""
    with run_lock(run_id, tenant=tenant) as run:
        allowed = sorted(t.target for t in run.get_available_status_transitions()
                         if t.target in OPERATOR_TARGETS)
        if status not in OPERATOR_TARGETS or status not in allowed:
            raise InvalidTransition(obj=f"Run {run.run_id}", current=run.status,
                                    allowed=allowed, target=status)
        reason = reason or f"operator set {status}"
        if status == RunStatus.RUNNING:
            open_gate = Gate.objects.filter(run=run, status=GateStatus.OPEN).first()
            if open_gate:
                raise Conflict(f"Run waits at gate {open_gate.id}; decide the gate to resume.",
                               code=ErrorCode.GATE_OPEN, gate_id=open_gate.id, current=run.status)
        if status in (RunStatus.CANCELLED, RunStatus.FAILED):
            steps = engine.steps_of(run)
            engine.run_end(run, steps, OPERATOR_TARGETS[status], actor=actor, reason=reason)
        else:
            engine.run_transition(run, OPERATOR_TARGETS[status], actor=actor, reason=reason)
            if status == RunStatus.RUNNING:
                engine.enqueue_advance(run.run_id)
    return run


def step_report(*, tenant, run_id, step_id: str, actor: str, status: str, output=None,
                error=None, attempt: int | None = None,
                lease_token: str | None = None) -> Run:
    """An external executor reports its step `succeeded` or `failed`; a claimed step's
    report carries its lease token (`runs.claims.lease_check`). Returns the run as the
    report left it (with `steps_left`)."""
    with run_lock(run_id, tenant=tenant) as run:
        steps = engine.steps_of(run)
        step = steps.get(step_id)
        if step is None:
            raise NotFound(f"Run has no step {step_id!r}.")
        if not is_external(step.step_type):
            raise Conflict(f"Step {step_id} is {step.step_type!r}; only external steps are "
                           "reported through the API.", code=ErrorCode.NOT_EXTERNAL)
        if step.status != StepStatus.RUNNING:
            raise InvalidTransition(obj=f"Step {step_id}", current=step.status,
                                    allowed=[], target=status)
        # An open gate pauses its run, and a run resumes only once none is open (the
        # gates' services, `run_set_status`): a running run has none to look for.
        open_gate = None if run.status == RunStatus.RUNNING else (
            Gate.objects.filter(step_run=step, status=GateStatus.OPEN).first())
        if open_gate:
            raise Conflict(f"Step {step_id} waits at gate {open_gate.id}.",
                           code=ErrorCode.GATE_OPEN,
                           gate_id=open_gate.id, current=step.status)
        if attempt is not None and attempt != step.attempt:
            raise Conflict(f"Step {step_id} is at attempt {step.attempt}, not {attempt}.",
                           code=ErrorCode.STALE_ATTEMPT, current=step.status)
        lease = claims.lease_check(run, step, lease_token)
        succeeded = status == StepStatus.SUCCEEDED
        errors = {field: [problem] for field, problem in
                  (("output", json_problem(output)), ("error", json_problem(error))) if problem}
        if status not in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            errors["status"] = ["succeeded or failed"]
        if errors:
            raise BadRequest("The report is not valid.", code=ErrorCode.INVALID, errors=errors)
        engine.step_conclude(run, steps, step, succeeded=succeeded,
                             output=output if succeeded else None, actor=actor,
                             error=None if succeeded else (error or {"detail": "failed"}))
        claims.lease_end(run, lease)
    return run


def run_request_gate(*, tenant, run_id, actor: str, reason: str, step_id: str | None = None,
                     settings: dict | None = None, actor_key: str = "") -> Gate:
    """Open a gate on a running run on request (API); the run pauses until it resolves."""
    try:
        clean = gate_settings_clean(settings)
    except GateSettingsError as exc:
        raise BadRequest("Invalid gate settings.", code=ErrorCode.INVALID,
                         errors=exc.errors) from None
    with run_lock(run_id, tenant=tenant) as run:
        if run.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
            raise InvalidTransition(obj=f"Run {run.run_id}", current=run.status,
                                    allowed=[], target=RunStatus.PAUSED)
        steps = engine.steps_of(run)
        step = None
        if step_id is not None:
            step = steps.get(step_id)
            if step is None:
                raise BadRequest(f"Run has no step {step_id!r}.", code=ErrorCode.INVALID,
                                 errors={"step_id": ["unknown step"]})
            # A pending step stays pending: the paused run starts nothing, and once the
            # gate is approved the step still gets its own policy decision. A running
            # step's report is refused while the gate is open.
            if step.status not in (StepStatus.PENDING, StepStatus.RUNNING):
                raise InvalidTransition(obj=f"Step {step_id}", current=step.status,
                                        allowed=[], target=StepStatus.WAITING)
        gate = gate_open(run=run, step_run=step, source="api", reason=reason,
                         requested_by=actor, requested_by_key=actor_key, settings=clean)
        if run.status == RunStatus.RUNNING:
            engine.run_transition(run, "pause", actor=actor, for_gate=True,
                                  reason=f"gate requested: {reason}")
    return gate


def run_gate_vote(*, tenant, run_id, gate_id, voter: Voter, decision: str,
                  comment: str = "", data=None, link: LinkClaim | None = None) -> Gate:
    """Record a vote; when the gate resolves, move the run (resume or fail).

    A vote cast through a one-click email link passes its `link` claim: the link is used
    up in the same transaction, so it decides at most once."""
    with run_lock(run_id, tenant=tenant) as run:
        gate = _locked_gate(run, gate_id)
        gate_vote(gate=gate, run=run, voter=voter, decision=decision, comment=comment, data=data)
        if link is not None:
            link_consume(link, gate=gate)
        if gate.status != GateStatus.OPEN:
            _after_gate(run, gate, actor=voter.actor)
    return gate


def _person_may(user, permission: str) -> bool:
    """Whether `user` (the person acting; None for a machine client) holds `permission`."""
    return user is not None and user.is_active and user.has_perm(permission)


def run_gate_override(*, tenant, run_id, gate_id, actor: str, justification: str,
                      user) -> Gate:
    """Break-glass: force an open gate through (`FC-GATE-005`) and move the run as an
    approval would. Only a person (`user`, the Django user acting as `actor`) holding the
    `gates.override_gate` permission may; the tenant can switch break-glass off
    (`settings.break_glass: false`). Four-eyes does not apply; the gate needs review."""
    if not _person_may(user, OVERRIDE_PERMISSION):
        raise Forbidden("Overriding a gate needs the gates.override_gate permission.")
    if tenant.settings.get("break_glass", True) is False:
        raise Forbidden("Break-glass overrides are switched off for this tenant.",
                        code=ErrorCode.BREAK_GLASS_DISABLED)
    if not (justification or "").strip():
        raise BadRequest("A justification is required to override a gate.", code=ErrorCode.INVALID,
                         errors={"justification": ["required"]})
    with run_lock(run_id, tenant=tenant) as run:
        gate = _locked_gate(run, gate_id)
        gate_override(gate=gate, run=run, actor=actor, justification=justification)
        _after_gate(run, gate, actor=actor)
    return gate


def run_gate_override_review(*, tenant, run_id, gate_id, actor: str, note: str,
                             user) -> Gate:
    """Mark a break-glass override reviewed (`FC-GATE-006`, on the run's stream even after
    the run ended). Only a person (`user`) holding the `gates.review_override` permission
    may; the one who overrode the gate cannot review it."""
    if not _person_may(user, REVIEW_PERMISSION):
        raise Forbidden("Reviewing an override needs the gates.review_override permission.")
    with run_lock(run_id, tenant=tenant) as run:
        gate = _locked_gate(run, gate_id)
        return gate_override_review(gate=gate, run=run, actor=actor, note=note)


# A gate by id (`fcore.rows`), read under its run's lock: gates change only under it (the
# gates' services assert it), so the run lock holds the gate too.
GATE_BY_ID = Rows(Gate, "SELECT {columns} FROM gates_gate g WHERE g.id = %s", alias="g")


def _locked_gate(run: Run, gate_id) -> Gate:
    """The run's gate, under the run's lock, with the run and its step from the run lock's
    steps."""
    gate = GATE_BY_ID.first([parse_gate_id(gate_id)])
    if gate is None or gate.run_id != run.run_id:
        raise NotFound("No such gate.")
    gate.run = run
    if gate.step_run_id is not None:
        gate.step_run = next(step for step in engine.steps_of(run).values()
                             if step.pk == gate.step_run_id)
    return gate


def _after_gate(run: Run, gate: Gate, *, actor: str) -> None:
    """A gate resolved. Approved: the run resumes when it was paused for gates and none is
    still open, and the engine releases the waiting step and moves on at once (in the
    vote's transaction, as a report's). Otherwise the run fails closed."""
    if gate.status not in (GateStatus.APPROVED, GateStatus.OVERRIDDEN):
        if run.status in (RunStatus.RUNNING, RunStatus.PAUSED):
            engine.run_fail(run, engine.steps_of(run), actor=actor,
                            reason=f"gate {gate.id} {gate.status}")
        return
    still_open = Gate.objects.filter(run=run, status=GateStatus.OPEN).exists()
    if engine.run_paused_for_gate(run) and not still_open:
        engine.run_transition(run, "resume", actor=actor,
                              reason=f"gate {gate.id} {gate.status}")
    if run.status == RunStatus.RUNNING:  # the step the gate held starts in this transaction
        engine.advance_locked(run, engine.steps_of(run))
    else:  # paused by an operator, or another gate is open: what moves it advances it
        engine.enqueue_advance(run.run_id)


def gates_expire_due(*, now=None) -> int:
    """Expire (or escalate once) every open gate past its deadline. Returns how many."""
    now = now or timezone.now()
    due = list(Gate.objects.filter(status=GateStatus.OPEN, expires_at__lte=now)
               .values_list("run_id", "id"))
    for run_id, gate_id in due:
        with run_lock(run_id) as run:
            gate = _locked_gate(run, gate_id)
            if gate.status != GateStatus.OPEN or gate.expires_at > now:
                continue
            if gate.on_timeout == "escalate" and gate_escalate(gate=gate, run=run,
                                                               actor=SCHEDULER, now=now):
                continue
            gate_expire(gate=gate, run=run, actor=SCHEDULER)
            _after_gate(run, gate, actor=SCHEDULER)
    return len(due)
