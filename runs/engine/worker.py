"""What a worker does with an internal step: execute it (delivered at least once), record
its result once, and take the next step of the run its own commit started (the chain)."""

import time

from django.utils import timezone

from fcore.actors import ENGINE

from ..handlers import StepContext, handler_run
from ..models import StepRun, StepStatus
from .advance import step_record_result
from .dispatch import chain, send_execute
from .lease import lease_kept
from .lock import run_memo


def step_execute(run_id, step_id: str, attempt: int, step_type: str | None = None) -> None:
    """Execute an internal step (delivered at least once) and record its result once; then
    the next step of the run this worker's commit started, if any (`dispatch._Chain`), without
    reading again what its own commit left (`lock.run_memo`)."""
    if chain.active:  # called from inside a chain (eager tests): the outer loop continues
        _step_execute_one(run_id, step_id, attempt, step_type)
        return
    chain.active, chain.taken, chain.next = True, 0, None
    args, taken = (run_id, step_id, attempt, step_type), False
    try:
        with run_memo():  # each lock of the chain re-reads only what others changed
            while args is not None:
                chain.next = None
                _step_execute_one(*args)
                args, taken = chain.next, True
    except BaseException:
        # A step this worker took from its own commit has no message of its own: back to
        # the queue with it (and with one a failing step's commit may have taken).
        for lost in (args if taken else None, chain.next):
            if lost is not None:
                send_execute(lost)
        raise
    finally:
        chain.active, chain.next = False, None


def _step_execute_one(run_id, step_id: str, attempt: int, step_type: str | None) -> None:
    """A long handler keeps its lease alive; it is asked to stop when the step stops running
    (cancelled run, superseded attempt) or its deadline passes. A `noop` needs nothing of
    the step: its result goes straight to the compare-and-set."""
    if step_type == "noop":
        step_record_result(run_id, step_id, attempt, succeeded=True, output={}, actor=ENGINE)
        return
    step = (StepRun.objects.filter(run_id=run_id, step_id=step_id, attempt=attempt,
                                   status=StepStatus.RUNNING)
            .only("run_id", "step_id", "attempt", "step_type", "input", "config",
                  "deadline_at").first())
    if step is None:
        return  # already recorded, or superseded: a redelivery
    deadline = None
    if step.deadline_at is not None:
        deadline = time.monotonic() + (step.deadline_at - timezone.now()).total_seconds()
    ctx = StepContext(run_id=str(run_id), step_id=step_id, attempt=attempt,
                      step_type=step.step_type, input=step.input or {}, config=step.config,
                      deadline=deadline)
    if step.step_type == "noop":
        succeeded, output, error = handler_run(ctx)
    else:
        with lease_kept(step, ctx):
            succeeded, output, error = handler_run(ctx)
    step_record_result(run_id, step_id, attempt, succeeded=succeeded, output=output,
                       actor=ENGINE, error=error)
