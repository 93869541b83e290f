"""What internal steps do: `noop`, `sleep`, `http` and `python:<dotted.path>` handlers.

A handler receives a `StepContext` and returns the step's output (a JSON object). It
raises `StepFailed` for a failure it understands; any other exception is a failure too.
Every handler gets the idempotency key `run:step:attempt`: delivery is at least once, so a
handler with effects outside FC must use it to act once. `ctx.stop` is set when the step no
longer runs (the run was cancelled or failed, or the attempt was superseded) or its
deadline passed; long handlers should watch it.
"""

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import import_module

import httpx
from django.conf import settings

from fcore.jsonlimits import json_problem

from .definitions import PYTHON_PREFIX, http_url_allowed, python_handler_allowed


class StepError(StrEnum):
    """The `code` of a failed step's `error` (DESIGN §5); members are the strings."""

    HANDLER_FAILED = "handler_failed"
    TIMEOUT = "timeout"
    STOPPED = "stopped"
    URL_NOT_ALLOWED = "url_not_allowed"
    HTTP_ERROR = "http_error"
    HTTP_STATUS = "http_status"
    HTTP_NOT_JSON = "http_not_json"
    HANDLER_MISSING = "handler_missing"
    HANDLER_ERROR = "handler_error"
    BAD_OUTPUT = "bad_output"
    FLAKY = "flaky"
    RUN_ENDED = "run_ended"
    LEASE_LOST = "lease_lost"
    # the workflow language (DESIGN §11); none is retried
    EXPRESSION_ERROR = "expression_error"
    MAP_TOO_MANY_ITEMS = "map_too_many_items"
    MAP_INSTANCE_FAILED = "map_instance_failed"
    # sub-workflows (`type: workflow`): a child run that did not complete; the first two
    # are not retried
    CHILD_UNKNOWN_WORKFLOW = "unknown_workflow"
    CHILD_TOO_DEEP = "subworkflow_too_deep"
    CHILD_FAILED = "child_run_failed"
    CHILD_CANCELLED = "child_run_cancelled"


class StepFailed(Exception):
    """A handler's failure. `retryable=False` skips the step's remaining retries."""

    def __init__(self, detail: str, *, code: str = StepError.HANDLER_FAILED,
                 retryable: bool = True):
        super().__init__(detail)
        self.code, self.retryable = code, retryable

    def as_error(self) -> dict:
        return {"code": str(self.code), "detail": str(self)[:1000], "retryable": self.retryable}


@dataclass
class StepContext:
    run_id: str
    step_id: str
    attempt: int
    step_type: str
    input: dict
    config: dict
    deadline: float | None = None  # time.monotonic() value, or None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.step_id}:{self.attempt}"

    def remaining(self, default: float | None = None) -> float | None:
        """Seconds left before the deadline (never below 0), else `default`."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.monotonic())


def noop(ctx: StepContext) -> dict:
    return {}


def sleep(ctx: StepContext) -> dict:
    seconds = float(ctx.config["seconds"])
    remaining = ctx.remaining()
    if remaining is not None and remaining < seconds:
        ctx.stop.wait(remaining)
        raise StepFailed(f"timed out after {ctx.config.get('timeout_s')} s", code=StepError.TIMEOUT)
    if ctx.stop.wait(seconds):
        raise StepFailed("stopped: the step no longer runs", code=StepError.STOPPED,
                         retryable=False)
    return {"slept_s": seconds}


def http(ctx: StepContext) -> dict:
    """POST the input as JSON to the step's allow-listed URL; the JSON object answered is
    the output. Redirects are not followed (they could leave the allow-list)."""
    url = ctx.config.get("url")
    if not http_url_allowed(url):
        raise StepFailed(f"url {url!r} is not allow-listed", code=StepError.URL_NOT_ALLOWED,
                         retryable=False)
    timeout = ctx.remaining(settings.FCORE_HTTP_TIMEOUT_S)
    try:
        response = httpx.post(url, json=ctx.input, timeout=max(timeout, 0.001),
                              follow_redirects=False,
                              headers={"Idempotency-Key": ctx.idempotency_key,
                                       "X-FC-Run": ctx.run_id, "X-FC-Step": ctx.step_id})
    except httpx.TimeoutException:
        raise StepFailed(f"no answer from {url} within {timeout:.1f} s",
                         code=StepError.TIMEOUT) from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{url}: {type(exc).__name__}", code=StepError.HTTP_ERROR) from None
    if not response.is_success:
        raise StepFailed(f"{url} answered {response.status_code}", code=StepError.HTTP_STATUS)
    try:
        output = response.json()
    except ValueError:
        raise StepFailed(f"{url} did not answer JSON", code=StepError.HTTP_NOT_JSON) from None
    if not isinstance(output, dict):
        raise StepFailed(f"{url} answered JSON that is not an object", code=StepError.HTTP_NOT_JSON)
    return output


BUILTIN = {"noop": noop, "sleep": sleep, "http": http}


def handler_for(step_type: str):
    """The callable for an internal step type; StepFailed (not retryable) when unknown or
    no longer registered in settings."""
    if step_type in BUILTIN:
        return BUILTIN[step_type]
    if step_type.startswith(PYTHON_PREFIX) and python_handler_allowed(step_type):
        module, _, name = step_type[len(PYTHON_PREFIX):].rpartition(".")
        try:
            return getattr(import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise StepFailed(f"handler {step_type} cannot be loaded: {exc}",
                             code=StepError.HANDLER_MISSING, retryable=False) from None
    raise StepFailed(f"no handler for step type {step_type!r}", code=StepError.HANDLER_MISSING,
                     retryable=False)


def handler_run(ctx: StepContext) -> tuple[bool, dict | None, dict | None]:
    """Run the step's handler: (succeeded, output, error). Never raises."""
    try:
        output = handler_for(ctx.step_type)(ctx)
        if output is None:
            output = {}
        if not isinstance(output, dict) or json_problem(output):
            raise StepFailed("the handler's output is not a JSON object that can be hashed",
                             code=StepError.BAD_OUTPUT, retryable=False)
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            raise StepFailed(f"timed out after {ctx.config.get('timeout_s')} s",
                             code=StepError.TIMEOUT)
        return True, output, None
    except StepFailed as exc:
        return False, None, exc.as_error()
    except Exception as exc:  # noqa: BLE001 - any handler failure is the step's failure
        name = type(exc).__name__
        if name == "SoftTimeLimitExceeded":
            error = StepFailed(f"timed out after {ctx.config.get('timeout_s')} s",
                               code=StepError.TIMEOUT)
        else:
            error = StepFailed(f"{name}: {exc}"[:1000], code=StepError.HANDLER_ERROR)
        return False, None, error.as_error()
