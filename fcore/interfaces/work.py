"""The executor loop of the SDK: claim → handle → heartbeat → report (DESIGN §12).

    def pay(task: Task) -> dict:
        # task.idempotency_key == f"{run_id}:{step_id}:{attempt}": pass it to the system
        # you call, so a step delivered again after a crash is not done twice
        return {"paid": task.input["amount"]}

    fc.work(pay, step_types=["external:payments"])          # FCClient
    await afc.work(pay, step_types=["external:payments"])   # AsyncFCClient

Each claimed task gets a heartbeat (every third of its lease) while its handler runs; a
heartbeat answered 409 `lease_lost` sets `task.lease_lost` (the step went to another
executor: a handler that checks it may stop early — its report would be refused). The
handler's return value is the step's output; raising `StepFailed(error)` reports the
step failed with that error; any other exception reports it failed with
`{"code": "handler_error", "detail": …}`. A report refused with `lease_lost` is dropped
(someone else has the step); a transport failure is retried with back-off while the lease
lasts. A failing claim backs off exponentially (0.5 s doubling to 30 s). SIGTERM or SIGINT
(when the loop runs in the main thread) or `stop.set()` ends the loop after the task in
hand is reported. No Django: this module only talks to the API through the client.
"""

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fcore.client.work")

BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 30.0
REPORT_TRIES = 5


class StepFailed(Exception):  # noqa: N818 - what a handler raises: the step failed
    """Raise from a handler to report the step failed with `error` (a JSON object; add
    `"retryable": false` to skip the step's retries)."""

    def __init__(self, error: dict | str):
        super().__init__(str(error))
        self.error = error if isinstance(error, dict) else {"detail": str(error)}


@dataclass
class Task:
    """One claimed step as the handler sees it."""

    run_id: str
    step_id: str
    attempt: int
    workflow: str
    step_type: str
    input: dict
    lease_token: str
    lease_expires_at: str
    lease_lost: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def idempotency_key(self) -> str:
        """`run:step:attempt`: the same for a step delivered again after its executor died."""
        return f"{self.run_id}:{self.step_id}:{self.attempt}"

    @classmethod
    def from_api(cls, data: dict) -> "Task":
        names = ("run_id", "step_id", "attempt", "workflow", "step_type", "input",
                 "lease_token", "lease_expires_at")
        return cls(**{name: data.get(name) for name in names})


def _code(exc: Exception) -> str | None:
    return getattr(exc, "code", None)


def _is_transport(exc: Exception) -> bool:
    """A transport failure or a server error: worth trying again."""
    status = getattr(exc, "status", None)
    return status == 0 or (isinstance(status, int) and status >= 500)


@dataclass
class Options:
    step_types: list[str] | None = None
    workflows: list[str] | None = None
    max: int = 1
    wait_s: float = 10
    lease_s: int = 60
    max_tasks: int | None = None  # stop after this many (tests, batch jobs)
    stop: threading.Event = field(default_factory=threading.Event)
    handle_signals: bool = True

    def claim_args(self) -> dict:
        return {"step_types": self.step_types, "workflows": self.workflows, "max": self.max,
                "wait_s": self.wait_s, "lease_s": self.lease_s}


def _outcome(task: Task, call: Callable[[], Any]) -> tuple[str, Any, Any]:
    """(status, output, error) of running the handler."""
    try:
        return "succeeded", call(), None
    except StepFailed as exc:
        return "failed", None, exc.error
    except Exception as exc:  # noqa: BLE001 - the handler's failure is the step's failure
        log.warning("handler failed on %s", task.idempotency_key, exc_info=True)
        return "failed", None, {"code": "handler_error", "detail": repr(exc)[:1000]}


@contextmanager
def _signals_stop(stop: threading.Event, enabled: bool):
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _beat(client, task: Task, lease_s: int, done: threading.Event) -> None:
    while not done.wait(max(lease_s / 3, 1)):
        try:
            client.heartbeat(task.run_id, task.step_id, task.lease_token)
        except Exception as exc:  # noqa: BLE001 - lost or transport: see below
            if _code(exc) == "lease_lost" or getattr(exc, "status", None) in (404, 409):
                task.lease_lost.set()
                return
            log.warning("heartbeat of %s failed; retrying", task.idempotency_key)


def _report(client, task: Task, status: str, output, error, stop: threading.Event) -> bool:
    delay = BACKOFF_START_S
    for _ in range(REPORT_TRIES):
        try:
            client.report_step(task.run_id, task.step_id, status, output=output, error=error,
                               attempt=task.attempt, lease_token=task.lease_token)
            return True
        except Exception as exc:  # noqa: BLE001 - decided below
            if not _is_transport(exc):
                log.warning("report of %s refused: %s", task.idempotency_key, exc)
                return False
            log.warning("report of %s failed; retrying in %.1fs", task.idempotency_key, delay)
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    return False


def _run_task(client, handler: Callable, task: Task, opts: Options) -> None:
    done = threading.Event()
    beat = threading.Thread(target=_beat, args=(client, task, opts.lease_s, done),
                            daemon=True, name=f"heartbeat {task.idempotency_key}")
    beat.start()
    try:
        status, output, error = _outcome(task, lambda: handler(task))
    finally:
        done.set()
        beat.join(timeout=5)
    if task.lease_lost.is_set():
        log.warning("lease of %s lost while it ran; not reporting", task.idempotency_key)
        return
    _report(client, task, status, output, error, opts.stop)


def work(client, handler: Callable[[Task], Any], **options) -> int:
    """The loop for `FCClient` (see the module docstring); returns how many tasks ran.
    Options: step_types, workflows, max, wait_s, lease_s, max_tasks, stop, handle_signals."""
    opts = Options(**options)
    handled, delay = 0, BACKOFF_START_S
    with _signals_stop(opts.stop, opts.handle_signals):
        while not opts.stop.is_set() and (opts.max_tasks is None or handled < opts.max_tasks):
            try:
                answer = client.claim_tasks(**opts.claim_args())
                tasks = [Task.from_api(t) for t in answer["tasks"]]
                delay = BACKOFF_START_S
            except Exception as exc:  # noqa: BLE001 - back off, then claim again
                if not _is_transport(exc):
                    raise
                log.warning("claim failed (%s); retrying in %.1fs", exc, delay)
                opts.stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            for task in tasks:
                _run_task(client, handler, task, opts)
                handled += 1
    return handled


# --- asyncio ------------------------------------------------------------------------------

async def _abeat(client, task: Task, lease_s: int) -> None:
    while True:
        await asyncio.sleep(max(lease_s / 3, 1))
        try:
            await client.heartbeat(task.run_id, task.step_id, task.lease_token)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) == "lease_lost" or getattr(exc, "status", None) in (404, 409):
                task.lease_lost.set()
                return
            log.warning("heartbeat of %s failed; retrying", task.idempotency_key)


async def _ahandle(handler: Callable, task: Task):
    if asyncio.iscoroutinefunction(handler):
        return await handler(task)
    return await asyncio.to_thread(handler, task)


async def _aoutcome(handler: Callable, task: Task) -> tuple[str, Any, Any]:
    try:
        return "succeeded", await _ahandle(handler, task), None
    except StepFailed as exc:
        return "failed", None, exc.error
    except Exception as exc:  # noqa: BLE001 - the handler's failure is the step's failure
        log.warning("handler failed on %s", task.idempotency_key, exc_info=True)
        return "failed", None, {"code": "handler_error", "detail": repr(exc)[:1000]}


async def _areport(client, task: Task, status: str, output, error) -> bool:
    delay = BACKOFF_START_S
    for _ in range(REPORT_TRIES):
        try:
            await client.report_step(task.run_id, task.step_id, status, output=output,
                                     error=error, attempt=task.attempt,
                                     lease_token=task.lease_token)
            return True
        except Exception as exc:  # noqa: BLE001
            if not _is_transport(exc):
                log.warning("report of %s refused: %s", task.idempotency_key, exc)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    return False


async def _arun_task(client, handler: Callable, task: Task, opts: Options) -> None:
    beat = asyncio.create_task(_abeat(client, task, opts.lease_s))
    try:
        status, output, error = await _aoutcome(handler, task)
    finally:
        beat.cancel()
        with suppress(asyncio.CancelledError):
            await beat
    if not task.lease_lost.is_set():
        await _areport(client, task, status, output, error)


async def awork(client, handler: Callable[[Task], Any], **options) -> int:
    """The loop for `AsyncFCClient`; the same options as `work`."""
    opts = Options(**options)
    loop = asyncio.get_running_loop()
    installed = []
    if opts.handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, opts.stop.set)
                installed.append(sig)
    handled, delay = 0, BACKOFF_START_S
    try:
        while not opts.stop.is_set() and (opts.max_tasks is None or handled < opts.max_tasks):
            try:
                answer = await client.claim_tasks(**opts.claim_args())
                tasks = [Task.from_api(t) for t in answer["tasks"]]
                delay = BACKOFF_START_S
            except Exception as exc:  # noqa: BLE001
                if not _is_transport(exc):
                    raise
                log.warning("claim failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            for task in tasks:
                await _arun_task(client, handler, task, opts)
                handled += 1
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return handled
