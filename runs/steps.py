"""Step transitions, each with its audit event. Callers hold the run lock (`run_lock`) and
pass the run's steps (`steps_of`): receipts chain from them without another query.

Receipts: a step gets one receipt, for the attempt that ends it (succeeded, or failed for
good). An attempt that fails and is retried is recorded by its `FC-STEP-003` and the
`FC-STEP-004` that schedules the next attempt, on the audit chain; it does not extend the
receipt chain.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit.hashing import GENESIS_HASH, json_hash
from audit.services import audit_append
from fcore.actors import ENGINE
from fcore.rows import db_value, quote, row_update, rows_fetch
from gates.policies import PolicySnapshot, policies_enabled

from .definitions import is_internal
from .models import Run, StepRun
from .receipts import receipt_hash


def steps_of(run: Run) -> dict[str, StepRun]:
    """The run's steps by id, in definition order (the run lock covers them). The first
    call under `run_lock` takes the steps read with the run."""
    steps = _prefetched(run, "steps")
    if steps is None:
        run.steps_reread = True  # not the instances read with the run (see runs.locks._Memo)
        steps = rows_fetch(StepRun, "run_id = %s", [db_value(Run, "run_id", run.pk)],
                           order_by=quote("index"))
    return {s.step_id: s for s in steps}


def run_policies(run: Run) -> list[PolicySnapshot]:
    """The tenant's enabled policies for a locked run (the first call takes those read
    with the run)."""
    policies = _prefetched(run, "policies")
    return policies_enabled(run.tenant) if policies is None else policies


def _prefetched(run: Run, what: str):
    prefetched = getattr(run, "prefetched", None)
    return prefetched.pop(what, None) if prefetched else None


def step_input(run: Run, step: StepRun) -> dict:
    """A step's input: the run's input, overlaid with the step's static `input`."""
    return {**run.input, **(step.config.get("input") or {})}


_STARTED = ("status", "started_at", "input", "input_hash", "deadline_at", "lease_expires_at",
            "decision", "policy_versions")
_FINISHED = ("status", "ended_at", "output", "error", "output_hash", "lease_expires_at",
             "receipt_seq", "prev_receipt_hash", "receipt_hash")


def step_start(run: Run, step: StepRun, *, actor: str = ENGINE) -> None:
    """pending|waiting → running, `FC-STEP-001`. An internal step gets a lease (its worker
    renews it) and is enqueued on commit; a step with `timeout_s` gets a deadline."""
    from .engine import enqueue_execute

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
    row_update(step, _STARTED)
    run.current_step, run.step_index = step.step_id, step.index
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-STEP-001",
                 actor=actor, data={"step_id": step.step_id, "step_type": step.step_type,
                                    "attempt": step.attempt, "input_hash": step.input_hash})
    if internal:
        enqueue_execute(step)


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
    step.output = output if succeeded else None
    step.error = None if succeeded else error
    step.output_hash = json_hash(step.output)
    step.lease_expires_at = None
    if receipt:
        seq, previous = _last_receipt(steps, step)
        step.receipt_seq, step.prev_receipt_hash = seq + 1, previous
        step.receipt_hash = receipt_hash(
            run_id=str(run.run_id), step_id=step.step_id, attempt=step.attempt,
            input_hash=step.input_hash, output_hash=step.output_hash, decision=step.decision,
            policy_versions=step.policy_versions, prev_receipt_hash=previous)
    row_update(step, _FINISHED)
    data = {"step_id": step.step_id, "attempt": step.attempt, "output_hash": step.output_hash,
            "receipt_hash": step.receipt_hash if receipt else None}
    if not succeeded:
        data["error"] = error
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name,
                 code="FC-STEP-002" if succeeded else "FC-STEP-003", actor=actor, data=data)


def step_save(step: StepRun) -> None:
    """Save a step whole but for `redeliveries`, which the sweeper counts without the run
    lock (a stale count must not overwrite it)."""
    step.save(update_fields=[f.name for f in StepRun._meta.concrete_fields
                             if not f.primary_key and f.name != "redeliveries"])


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
    step_save(step)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-STEP-004",
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
    step.error = {"code": step.status, "detail": reason}
    step_save(step)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code="FC-STEP-005",
                 actor=actor, data={"step_id": step.step_id, "status": step.status,
                                    "reason": reason})
