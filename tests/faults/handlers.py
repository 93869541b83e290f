"""The step handler of the fault tests, registered only in their worker processes.

`slow` waits `wait_s` seconds (input) and journals its start and end, with the pool
process's pid and the idempotency key `run:step:attempt`, to the file named by
`FCORE_FAULTS_JOURNAL`: the test reads it to kill a worker while one of its processes is
in the middle of a step, and afterwards to see that the killed step was executed again.
It fails (retryably) while its attempt is below `succeed_on_attempt` (input, default 1).
"""

import os
import time

from runs.handlers import StepContext, StepFailed

JOURNAL_ENV = "FCORE_FAULTS_JOURNAL"
SLOW = "tests.faults.handlers.slow"


def _journal(what: str, ctx: StepContext) -> None:
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    line = f"{time.time():.3f} {os.getpid()} {what} {ctx.idempotency_key}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one write of a short line to an O_APPEND file: never torn
    finally:
        os.close(fd)


def slow(ctx: StepContext) -> dict:
    _journal("start", ctx)
    seconds = float(ctx.input.get("wait_s", 1))
    if ctx.stop.wait(seconds):
        _journal("stopped", ctx)
        raise StepFailed("stopped", code="stopped", retryable=False)
    _journal("end", ctx)
    if ctx.attempt < int(ctx.input.get("succeed_on_attempt", 1)):
        raise StepFailed(f"attempt {ctx.attempt} fails", code="planned_failure")
    return {"waited_s": seconds, "attempt": ctx.attempt}
