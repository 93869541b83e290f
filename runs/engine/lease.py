"""Leases of running internal steps: a worker renews its step's lease while the handler
runs, and tells the handler to stop when the step no longer runs (the run ended, or the
sweeper timed the attempt out) or its deadline passes."""

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.utils import timezone

from ..handlers import StepContext
from ..models import StepRun, StepStatus

log = logging.getLogger(__name__)


def lease_renew(step: StepRun) -> bool:
    """Push the lease forward while the step still runs this attempt; False otherwise."""
    renewed = StepRun.objects.filter(
        pk=step.pk, status=StepStatus.RUNNING, attempt=step.attempt,
    ).update(lease_expires_at=timezone.now() + timedelta(seconds=settings.FCORE_STEP_LEASE_S))
    return renewed == 1


def _beat(step: StepRun, ctx: StepContext, done: threading.Event) -> None:
    interval = max(settings.FCORE_STEP_LEASE_S / 3, 0.05)
    try:
        while not done.wait(min(interval, ctx.remaining(interval) or 0.05)):
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
                ctx.stop.set()
            try:
                if not lease_renew(step):
                    ctx.stop.set()
                    return
            except Exception:  # noqa: BLE001 - a database blip: try again at the next beat
                log.warning("lease renewal of %s failed; retrying", step, exc_info=True)
                connections.close_all()  # reconnect next time rather than reuse a dead one
    finally:
        connections.close_all()  # this thread's own connection


@contextmanager
def lease_kept(step: StepRun, ctx: StepContext):
    """Renew the step's lease in a background thread for as long as the block runs."""
    done = threading.Event()
    thread = threading.Thread(target=_beat, args=(step, ctx, done), daemon=True,
                              name=f"lease {step}")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
