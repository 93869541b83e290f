"""The sweeper (a Celery beat task): re-drives what a lost task or a dead worker left
behind. Every action is idempotent, so any number of sweepers may run at any time.

- a running step past its `timeout_s` deadline fails that attempt (`timeout`), which
  retries or fails the run like any failure — external steps included;
- a running internal step whose lease ran out (its worker died, its task was lost) is
  delivered again, same attempt; after FCORE_STEP_MAX_REDELIVERIES the attempt fails
  (`lease_lost`);
- a step whose retry backoff is over, and a run with nothing in flight that stopped
  moving (a child run whose start was lost among them), get their run advanced;
- a run with a running workflow step whose child run ended (the child's wake-up of its
  parent was lost) gets advanced, which settles the step (`children`).
"""

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fcore.actors import SCHEDULER

from ..definitions import is_external
from ..handlers import StepError
from ..models import RUN_TERMINAL, Run, RunStatus, StepRun, StepStatus
from .advance import step_record_result
from .dispatch import enqueue_advance, enqueue_execute

log = logging.getLogger(__name__)

BATCH = 500
LIVE = (RunStatus.RUNNING, RunStatus.PAUSED)
# An internal step's own worker enforces its deadline; the sweeper gives it this long more.
INTERNAL_GRACE_S = 5.0


@dataclass
class Sweep:
    timed_out: int = 0
    redelivered: int = 0
    lease_lost: int = 0
    advanced: int = 0
    parents_woken: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _fail_attempt(step: StepRun, code: str, detail: str) -> bool:
    return step_record_result(step.run_id, step.step_id, step.attempt, succeeded=False,
                              output=None, actor=SCHEDULER,
                              error={"code": str(code), "detail": detail})


def steps_timed_out(now, sweep: Sweep) -> None:
    due = StepRun.objects.filter(status=StepStatus.RUNNING, run__status__in=LIVE,
                                 deadline_at__lt=now).only("run_id", "step_id", "attempt",
                                                           "step_type", "config", "deadline_at")
    for step in due[:BATCH]:
        grace = 0 if is_external(step.step_type) else INTERNAL_GRACE_S
        if step.deadline_at + timedelta(seconds=grace) > now:
            continue
        detail = f"not finished within timeout_s={step.config.get('timeout_s')}"
        sweep.timed_out += _fail_attempt(step, StepError.TIMEOUT, detail)


def leases_expired(now, sweep: Sweep) -> None:
    due = StepRun.objects.filter(status=StepStatus.RUNNING, run__status__in=LIVE,
                                 lease_expires_at__lt=now)
    lease = timedelta(seconds=settings.FCORE_STEP_LEASE_S)
    for step in due.only("id", "run_id", "step_id", "attempt", "lease_expires_at",
                         "redeliveries")[:BATCH]:
        if step.redeliveries >= settings.FCORE_STEP_MAX_REDELIVERIES:
            detail = f"lease expired {step.redeliveries + 1} times: its workers keep dying"
            sweep.lease_lost += _fail_attempt(step, StepError.LEASE_LOST, detail)
            continue
        with transaction.atomic():
            claimed = StepRun.objects.filter(
                pk=step.pk, status=StepStatus.RUNNING, attempt=step.attempt,
                lease_expires_at=step.lease_expires_at,
            ).update(lease_expires_at=now + lease, redeliveries=F("redeliveries") + 1)
            if claimed:
                log.info("lease of %s attempt %s expired; delivering it again", step,
                         step.attempt)
                enqueue_execute(step)
                sweep.redelivered += 1


def runs_due(now, sweep: Sweep, *, stalled_after_s: float) -> None:
    retry_due = (StepRun.objects.filter(status=StepStatus.PENDING, run__status=RunStatus.RUNNING,
                                        not_before__lte=now - timedelta(seconds=1))
                 .values_list("run_id", flat=True))
    stalled = (Run.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING],
                                  updated_at__lt=now - timedelta(seconds=stalled_after_s))
               .exclude(steps__status=StepStatus.RUNNING)
               .values_list("run_id", flat=True))
    run_ids = set(retry_due[:BATCH]) | set(stalled[:BATCH])
    with transaction.atomic():
        for run_id in run_ids:
            enqueue_advance(run_id)
    sweep.advanced += len(run_ids)


def children_ended_lost(now, sweep: Sweep, *, after_s: float) -> None:
    """Parents with a running workflow step whose child ended more than `after_s` ago
    (its wake-up should have settled the step by then) are advanced again."""
    parents = (StepRun.objects.filter(
        status=StepStatus.RUNNING, step_type="workflow", run__status__in=LIVE,
        run__children__parent_step_id=F("step_id"),
        run__children__status__in=RUN_TERMINAL,
        run__children__ended_at__gte=F("started_at"),
        run__children__ended_at__lt=now - timedelta(seconds=after_s))
        .values_list("run_id", flat=True).distinct())
    run_ids = set(parents[:BATCH])
    with transaction.atomic():
        for run_id in run_ids:
            enqueue_advance(run_id)
    sweep.parents_woken += len(run_ids)


def runs_sweep(*, now=None, stalled_after_s: float = 30) -> Sweep:
    """One pass of the sweeper; returns what it did."""
    now = now or timezone.now()
    sweep = Sweep()
    steps_timed_out(now, sweep)
    leases_expired(now, sweep)
    runs_due(now, sweep, stalled_after_s=stalled_after_s)
    children_ended_lost(now, sweep, after_s=min(stalled_after_s, 5))
    if any(sweep.as_dict().values()):
        log.info("sweep: %s", sweep.as_dict())
    return sweep
