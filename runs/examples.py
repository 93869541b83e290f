"""Example `python:` step handlers, registered by default (settings.FCORE_STEP_HANDLERS)
for the demo and the tests. A real deployment registers its own and may drop these."""

from .handlers import StepContext, StepError, StepFailed


def echo(ctx: StepContext) -> dict:
    """Returns its input and the idempotency key it was given."""
    return {"input": ctx.input, "idempotency_key": ctx.idempotency_key}


def flaky(ctx: StepContext) -> dict:
    """Fails until attempt `succeed_on_attempt` (input, default 2), then succeeds."""
    succeed_on = int(ctx.input.get("succeed_on_attempt", 2))
    if ctx.attempt < succeed_on:
        raise StepFailed(f"flaky: attempt {ctx.attempt} fails", code=StepError.FLAKY)
    return {"attempt": ctx.attempt}


def wait(ctx: StepContext) -> dict:
    """Waits `wait_s` seconds (input, default 1) unless asked to stop."""
    seconds = float(ctx.input.get("wait_s", 1))
    if ctx.stop.wait(seconds):
        raise StepFailed("stopped", code=StepError.STOPPED, retryable=False)
    return {"waited_s": seconds}
