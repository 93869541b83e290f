"""Starting the runs of due schedules (DESIGN §11), called by beat every
`FCORE_SCHEDULE_INTERVAL_S` (`runs.tasks.start_due_schedules`).

At most one run per schedule and slot, whatever runs this at once or again:

- each schedule is dealt with in its own transaction holding its row lock
  (`SELECT … FOR UPDATE SKIP LOCKED`: a second beat passes over a schedule the first has
  in hand), re-read under the lock; the runs started and the new `last_slot` commit
  together, so a slot dealt with is never dealt with again;
- the run's idempotency key is `schedule:<name>:<slot ISO 8601 UTC>`, unique per tenant
  (`uniq_run_idempotency`), so even a second start of a slot finds the first run.

Slots due since `last_slot`: the newest runs, and so does any other within
`FCORE_SCHEDULE_CATCHUP_S` of now; older ones (beat was down) are not run but recorded as
skipped (`FC-ADM-007`, with their count and the first and last; slots more than 31 days
old are not counted) on the tenant's admin stream. A run that cannot start (its workflow
refused it) is recorded the same way.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.codes import Code
from audit.services import admin_stream_name, audit_append
from fcore.actors import SCHEDULER
from fcore.errors import Conflict, FCError

from .cron import slot_name, slot_next, slots_between
from .models import Run, Schedule
from .services import run_create

log = logging.getLogger(__name__)
# slots further back than this are not looked at (nor counted) on recovery: a per-minute
# schedule has 44,640 slots in 31 days, some seconds of croniter
LOOKBACK = timedelta(days=31)
KEEP = 100  # the newest due slots looked at one by one


@dataclass
class BeatResult:
    started: list = field(default_factory=list)  # (schedule, slot name, run id)
    existing: int = 0  # slots whose run had been started already (found by its key)
    skipped: int = 0
    failed: int = 0  # schedules left as they were (an error, logged): tried again next time

    def as_dict(self) -> dict:
        return {"started": len(self.started), "existing": self.existing,
                "skipped": self.skipped, "failed": self.failed}


def schedule_idempotency_key(name: str, slot) -> str:
    return f"schedule:{name}:{slot_name(slot)}"


def schedules_start_due(*, now=None) -> BeatResult:
    """Start a run for every due slot of every active schedule (see the module)."""
    now = now or timezone.now()
    result = BeatResult()
    due = (Schedule.objects.filter(enabled=True, paused=False, next_slot__lte=now)
           .order_by("next_slot").values_list("pk", flat=True))
    for pk in list(due):
        try:
            _schedule_tick(pk, now, result)
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
            log.exception("schedule %s: due slots not dealt with", pk)
            result.failed += 1
    return result


def _schedule_tick(pk: int, now, result: BeatResult) -> None:
    with transaction.atomic():
        schedule = (Schedule.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("tenant").filter(pk=pk).first())
        if schedule is None or not schedule.active or schedule.next_slot is None \
                or schedule.next_slot > now:
            return  # another beat has it, or dealt with it already
        after = max(schedule.last_slot or schedule.created_at, now - LOOKBACK)
        slots, count, first = slots_between(schedule.cron, schedule.timezone, after=after,
                                            until=now, keep=KEEP)
        catchup = now - timedelta(seconds=settings.FCORE_SCHEDULE_CATCHUP_S)
        run_slots = [s for s in slots if s >= catchup][-(KEEP - 1):] or slots[-1:]
        missed = count - len(run_slots)
        if missed:  # then `slots` holds at least one slot before `run_slots`
            _record_skipped(schedule, count=missed, first=first,
                            last=slots[-len(run_slots) - 1], reason="missed while beat was down")
            result.skipped += missed
        for slot in run_slots:
            run, created = _start(schedule, slot)
            if run is None:
                result.skipped += 1
                continue
            schedule.last_run = run
            if created:
                result.started.append((schedule.name, slot_name(slot), str(run.run_id)))
            else:
                result.existing += 1
        if slots:
            schedule.last_slot = slots[-1]
        schedule.next_slot = slot_next(schedule.cron, schedule.timezone, after=now)
        schedule.save(update_fields=["last_slot", "next_slot", "last_run", "updated_at"])


def _start(schedule: Schedule, slot) -> tuple[Run | None, bool]:
    """(run, created): the run of `schedule` for `slot`, or the one started for it before;
    (None, False), recorded as a skipped slot, when the run is refused."""
    key = schedule_idempotency_key(schedule.name, slot)
    try:
        with transaction.atomic():
            return run_create(tenant=schedule.tenant, workflow=schedule.workflow,
                              input=schedule.input, actor=SCHEDULER, idempotency_key=key,
                              metadata={"schedule": schedule.name, "slot": slot_name(slot)},
                              schedule=schedule.name)
    except Conflict:
        # the slot's run exists, started with another input (the bundle changed since)
        existing = Run.objects.for_tenant(schedule.tenant).filter(idempotency_key=key).first()
        if existing is not None:
            return existing, False
        raise
    except FCError as exc:
        log.warning("schedule %s: slot %s not started: %s", schedule.name, slot_name(slot),
                    exc.detail)
        _record_skipped(schedule, count=1, first=slot, last=slot,
                        reason=f"run not started: {exc.detail}")
        return None, False


def _record_skipped(schedule: Schedule, *, count: int, first, last, reason: str) -> None:
    audit_append(tenant_id=schedule.tenant_id, stream=admin_stream_name(schedule.tenant.slug),
                 code=Code.SCHEDULE_SLOTS_SKIPPED, actor=SCHEDULER,
                 data={"schedule": schedule.name, "count": count, "first": slot_name(first),
                       "last": slot_name(last), "reason": reason})
