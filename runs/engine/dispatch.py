"""Work handed to Celery after a commit: a run to advance, an internal step to execute.

Tasks are sent by name (`ADVANCE_TASK`, `EXECUTE_TASK`; `runs.tasks` registers them), so
the engine does not import the tasks that call it. A step this thread's worker can take
itself goes to its chain instead (`_Chain`).
"""

import logging
import threading

from celery import current_app
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

ADVANCE_TASK = "runs.tasks.advance_run"
EXECUTE_TASK = "runs.tasks.execute_step"


def _send(name: str, args: tuple, countdown: float | None = None) -> None:
    """Enqueue after commit. The change is already committed then, so a broker that is
    down must not turn it into an error: it is logged, and the beat sweeper re-drives the
    run (`runs.engine.sweeper.runs_sweep`)."""
    task = current_app.tasks[name]
    try:
        task.apply_async(args, countdown=countdown) if countdown else task.delay(*args)
    except Exception:  # noqa: BLE001 - any broker failure; the state is safe in the database
        log.exception("could not enqueue %s%r; the sweeper will re-drive it", name, args)


def enqueue_advance(run_id, *, countdown: float | None = None) -> None:
    """Advance the run once this transaction commits (after `countdown` seconds)."""
    transaction.on_commit(lambda: _send(ADVANCE_TASK, (str(run_id),), countdown))


class _Chain(threading.local):
    """The worker executing a step of a run takes the next internal step of the same run
    that its own commit started, instead of a round trip through the broker (at most
    `FCORE_STEP_CHAIN_MAX` in a row). Other steps started by that commit (fan-out) go to
    the queue. A worker that dies between the commit and the step loses nothing: the step
    is running with a lease, and the sweeper re-delivers it when the lease expires."""

    active = False
    taken = 0
    next: tuple | None = None

    def offer(self, args: tuple) -> bool:
        if not self.active or self.next is not None \
                or self.taken >= settings.FCORE_STEP_CHAIN_MAX:
            return False
        self.next = args
        self.taken += 1
        return True


chain = _Chain()


def send_execute(args: tuple) -> None:
    _send(EXECUTE_TASK, args)


def _dispatch(args: tuple) -> None:
    if not chain.offer(args):
        send_execute(args)


def enqueue_execute(step) -> None:
    """Execute the internal step once this transaction commits: in this worker's chain, or
    through the queue."""
    args = (str(step.run_id), step.step_id, step.attempt, step.step_type)
    transaction.on_commit(lambda: _dispatch(args))
