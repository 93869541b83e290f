"""Step transitions, each with its audit event. Callers hold the run lock (`run_lock`) and
pass the run's steps (`steps_of`): receipts chain from them without another query. Each
transition marks the step changed (`step_changed`): the lock writes it when its block ends.

Receipts: a step gets one receipt, for the attempt that ends it (succeeded, or failed for
good). An attempt that fails and is retried is recorded by its `FC-STEP-003` and the
`FC-STEP-004` that schedules the next attempt, on the audit chain; it does not extend the
receipt chain.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit.codes import Code
from audit.hashing import GENESIS_HASH, json_hash
from audit.services import audit_append
from fcore.actors import ENGINE
from fcore.metrics import STEP_DURATION, observe_on_commit
from gates.notify import step_ready_notify
from gates.policies import PolicySnapshot

from ..definitions import is_external, is_internal
from ..expressions import Evaluation, StepPlan, definition_plan
from ..models import Run, StepRun
from ..receipts import receipt_hash
from ..wakeups import steps_ready_announce
from .dispatch import enqueue_execute
from .lock import locked, step_changed


def steps_of(run: Run) -> dict[str, StepRun]:
    """The steps of a run whose lock the caller holds, by id, in definition order."""
    return locked(run).steps


def run_policies(run: Run) -> list[PolicySnapshot]:
    """The tenant's enabled policies, read with the run by its lock."""
    return locked(run).policies


def step_plan(run: Run, step: StepRun) -> StepPlan | None:
    """The compiled expressions, `when` and `map` of a step (a map instance: its parent's),
    or None for a step that has none: the engine then does nothing more for it."""
    return definition_plan(run.definition).steps.get(step.map_parent or step.step_id)


def expression_variables(run: Run, steps: dict[str, StepRun], *, names: frozenset,
                         reads: frozenset) -> dict:
    """What expressions that read the variables `names` and the steps `reads` see (DESIGN
    §11): `run` (id, workflow, input) and `steps.<id>` (output, status); only those."""
    variables = {}
    if "run" in names:
        variables["run"] = {"id": str(run.run_id), "workflow": run.definition.name,
                            "input": run.input}
    if "steps" in names:
        variables["steps"] = {step_id: {"output": steps[step_id].output,
                                        "status": steps[step_id].status}
                              for step_id in reads if step_id in steps}
    return variables


def expression_evaluation(run: Run, steps: dict[str, StepRun], step: StepRun,
                          plan: StepPlan) -> Evaluation:
    """The evaluation of a step's expressions: the upstream steps they read, and a map
    instance's `item` and `index`."""
    variables = expression_variables(run, steps, names=plan.variables, reads=plan.steps)
    if step.map_parent:
        variables["item"], variables["index"] = step.config.get("map_item"), step.map_index
    return Evaluation(variables)


def resolve_step_input(run: Run, step: StepRun, steps: dict[str, StepRun]) -> dict:
    """A step's input: the run's input, overlaid with the step's `input` whose expressions
    are evaluated against `steps` (the run's steps, `steps_of`). Raises ExpressionFailed.
    Policies see this as `input`, the receipt hashes it, and a child run receives it."""
    plan = step_plan(run, step)
    if plan is None or plan.input is None:
        return {**run.input, **(step.config.get("input") or {})}
    evaluation = expression_evaluation(run, steps, step, plan)
    return {**run.input, **evaluation.fill(plan.input, "input")}


def step_input(run: Run, step: StepRun) -> dict:
    """A step's input (`resolve_step_input`) over the steps its run's lock holds; a run
    not held (a decision preview) has no step outputs to read."""
    held = getattr(run, "locked", None)
    return resolve_step_input(run, step, held.steps if held is not None else {})


def step_start(run: Run, step: StepRun, *, actor: str = ENGINE, child: dict | None = None
               ) -> None:
    """pending|waiting → running, `FC-STEP-001`. An internal step gets a lease (its worker
    renews it) and is enqueued on commit; an external one is announced to executors
    (`step.ready` webhook, waiting claims woken on commit); a step with `timeout_s` gets a
    deadline. A workflow step's event names its `child` run (`children.child_event_data`)."""
    now = timezone.now()
    step.start()
    step.started_at = now
    if step.input is None:
        step.input = step_input(run, step)
    step.input_hash = json_hash(step.input)
    timeout = step.config.get("timeout_s")
    step.deadline_at = now + timedelta(seconds=timeout) if timeout else None
    internal = is_internal(step.step_type)
    lease = timedelta(seconds=settings.FCORE_STEP_LEASE_S)
    step.lease_expires_at = now + lease if internal else None
    step_changed(run, step)
    run.current_step, run.step_index = step.step_id, step.index
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code=Code.STEP_STARTED,
                 actor=actor, data={"step_id": step.step_id, "step_type": step.step_type,
                                    "attempt": step.attempt, "input_hash": step.input_hash,
                                    **(child or {})})
    if internal:
        enqueue_execute(step)
    elif is_external(step.step_type):  # waits for an executor (DESIGN §12)
        step_ready_notify(run=run, step=step)
        steps_ready_announce(run.tenant_id)


def _last_receipt(steps: dict[str, StepRun], but: StepRun) -> tuple[int, str]:
    seq, digest = 0, GENESIS_HASH
    for other in steps.values():
        if other is not but and other.receipt_hash and other.receipt_seq > seq:
            seq, digest = other.receipt_seq, other.receipt_hash
    return seq, digest


def step_finish(run: Run, steps: dict[str, StepRun], step: StepRun, *, succeeded: bool,
                output, actor: str, error=None, receipt: bool = True) -> None:
    """running → succeeded|failed, `FC-STEP-002` or `FC-STEP-003`, with the step's receipt
    unless the attempt is about to be retried (`receipt=False`)."""
    step.succeed() if succeeded else step.fail()
    step.ended_at = timezone.now()
    observe_on_commit(STEP_DURATION, step.started_at, step.ended_at)
    step.output = output if succeeded else None
    step.error = None if succeeded else error
    # a failed step has no output: its output_hash is none (stored "", null when hashed)
    step.output_hash = json_hash(step.output) if succeeded else ""
    step.lease_expires_at = None
    if receipt:
        seq, previous = _last_receipt(steps, step)
        step.receipt_seq, step.prev_receipt_hash = seq + 1, previous
        step.receipt_hash = receipt_hash(
            run_id=str(run.run_id), step_id=step.step_id, attempt=step.attempt,
            input_hash=step.input_hash, output_hash=step.output_hash or None,
            decision=step.decision, policy_versions=step.policy_versions,
            prev_receipt_hash=previous)
    step_changed(run, step)
    data = {"step_id": step.step_id, "attempt": step.attempt,
            "output_hash": step.output_hash or None,
            "receipt_hash": step.receipt_hash if receipt else None}
    if not succeeded:
        data["error"] = error
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name,
                 code=Code.STEP_SUCCEEDED if succeeded else Code.STEP_FAILED, actor=actor,
                 data=data)


def retry_delay(retry: dict, failed_attempt: int) -> float:
    """Exponential backoff with jitter: half of min(max_backoff, backoff·2^(n−1)) plus a
    random share of the other half."""
    ceiling = min(float(retry["max_backoff"]), float(retry["backoff"]) * 2 ** (failed_attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def step_retry_due(step: StepRun, error) -> bool:
    retry = step.config.get("retry")
    retryable = not (isinstance(error, dict) and error.get("retryable") is False)
    return bool(retry) and retryable and step.attempt < retry["max_attempts"]


def step_retry(run: Run, step: StepRun, *, actor: str) -> float:
    """failed → pending as attempt n+1 after a backoff, `FC-STEP-004`. Returns the delay;
    the caller enqueues the run's advance for then."""
    delay = retry_delay(step.config["retry"], step.attempt)
    failed_attempt, error = step.attempt, step.error
    step.retry()
    step.not_before = timezone.now() + timedelta(seconds=delay)
    step.started_at = step.ended_at = step.deadline_at = step.lease_expires_at = None
    step.decision, step.policy_versions = "", []
    step_changed(run, step)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code=Code.STEP_RETRY,
                 actor=actor,
                 data={"step_id": step.step_id, "attempt": step.attempt,
                       "failed_attempt": failed_attempt, "error": error,
                       "delay_s": round(delay, 3), "not_before": step.not_before.isoformat(),
                       "max_attempts": step.config["retry"]["max_attempts"]})
    return delay


def step_close(run: Run, step: StepRun, how: str, *, actor: str, reason: str) -> None:
    """pending|waiting → skipped|cancelled, `FC-STEP-005`."""
    getattr(step, how)()
    step.ended_at = timezone.now()
    step.lease_expires_at = None
    step.error = {"code": step.status, "detail": reason}
    step_changed(run, step)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code=Code.STEP_CLOSED,
                 actor=actor, data={"step_id": step.step_id, "status": step.status,
                                    "reason": reason})
