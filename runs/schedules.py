"""Schedules (DESIGN §11): checking a bundle's schedule, saving it, pausing and resuming.

Every change is audited on the tenant's admin stream (`FC-ADM-006`) in its transaction.
Starting due runs is the beat's work (`runs.beat`).
"""

import re

from django.db import transaction
from django.utils import timezone

from audit.codes import Code
from audit.hashing import json_hash
from audit.services import admin_stream_name, audit_append
from fcore.errors import NotFound
from fcore.jsonlimits import json_problem

from .cron import cron_problem, slot_next, timezone_problem
from .models import Schedule

SCHEDULE_KEYS = {"name", "workflow", "cron", "timezone", "input", "enabled"}
# names travel in idempotency keys (`schedule:<name>:<slot>`, at most 200 characters)
SCHEDULE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class ScheduleError(ValueError):
    """A schedule that cannot be loaded; `key` is the field at fault."""

    def __init__(self, message: str, *, key: str = ""):
        self.key = key
        super().__init__(message)


def schedule_clean(spec, *, workflows: frozenset) -> dict:
    """The schedule `spec` with its defaults, or ScheduleError naming the key at fault.
    `workflows` are the workflow names it may start."""
    if not isinstance(spec, dict):
        raise ScheduleError("a schedule is a mapping with name, workflow and cron")
    unknown = set(spec) - SCHEDULE_KEYS
    if unknown:
        raise ScheduleError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                            key=sorted(map(str, unknown))[0])
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
        raise ScheduleError("name must be up to 100 letters, digits, '_', '.' or '-'",
                            key="name")
    workflow = spec.get("workflow")
    if not isinstance(workflow, str) or workflow not in workflows:
        raise ScheduleError(f"workflow {workflow!r} is not a workflow of this tenant or "
                            "bundle", key="workflow")
    clean = {"name": name, "workflow": workflow, "cron": spec.get("cron"),
             "timezone": spec.get("timezone", "UTC"), "input": spec.get("input", {}),
             "enabled": spec.get("enabled", True)}
    for key, problem in (("cron", cron_problem(clean["cron"])),
                         ("timezone", timezone_problem(clean["timezone"]))):
        if problem:
            raise ScheduleError(f"{key} {problem}", key=key)
    clean["cron"] = clean["cron"].strip()
    if not isinstance(clean["input"], dict):
        raise ScheduleError("input must be an object", key="input")
    problem = json_problem(clean["input"])
    if problem:
        raise ScheduleError(f"input {problem}", key="input")
    if not isinstance(clean["enabled"], bool):
        raise ScheduleError("enabled must be true or false", key="enabled")
    return clean


def _audit(schedule: Schedule, *, action: str, actor: str, **extra) -> None:
    audit_append(tenant_id=schedule.tenant_id, stream=admin_stream_name(schedule.tenant.slug),
                 code=Code.SCHEDULE_CHANGED, actor=actor,
                 data={"schedule": schedule.name, "action": action, **extra})


def _reschedule(schedule: Schedule, now) -> None:
    """Count slots from `now` on (nothing before it is due) and set the next one."""
    schedule.last_slot = now
    schedule.next_slot = (slot_next(schedule.cron, schedule.timezone, after=now)
                          if schedule.active else None)


def schedule_save(*, tenant, spec: dict, actor: str) -> tuple[Schedule, bool]:
    """Create or update a schedule from a bundle's cleaned `spec` (`schedule_clean`);
    returns (schedule, changed). A new cron or time zone counts slots from now; the
    operator's pause stays."""
    spec_hash = json_hash(spec)
    now = timezone.now()
    with transaction.atomic():
        schedule = (Schedule.objects.select_for_update().select_related("tenant")
                    .filter(tenant=tenant, name=spec["name"]).first())
        if schedule is not None and schedule.spec_hash == spec_hash:
            return schedule, False
        created = schedule is None
        if created:
            schedule = Schedule(tenant=tenant, name=spec["name"], created_by=actor)
        timing = (schedule.cron, schedule.timezone, schedule.active)
        schedule.workflow, schedule.cron = spec["workflow"], spec["cron"]
        schedule.timezone, schedule.input = spec["timezone"], spec["input"]
        schedule.enabled, schedule.spec_hash = spec["enabled"], spec_hash
        if created or timing != (schedule.cron, schedule.timezone, schedule.active):
            _reschedule(schedule, now)
        schedule.save()
        _audit(schedule, action="created" if created else "changed", actor=actor,
               workflow=schedule.workflow, cron=schedule.cron, timezone=schedule.timezone,
               enabled=schedule.enabled, spec_hash=spec_hash)
    return schedule, True


def schedule_set_paused(*, tenant, name: str, paused: bool, actor: str) -> Schedule:
    """An operator pauses or resumes a schedule (`FC-ADM-006`, action paused/resumed).
    Slots that fall while it is paused are not run; resuming counts slots from now.
    Pausing a paused schedule (or resuming a running one) changes nothing."""
    with transaction.atomic():
        schedule = (Schedule.objects.for_tenant(tenant).select_for_update()
                    .select_related("tenant").filter(name=name).first())
        if schedule is None:
            raise NotFound("No such schedule.")
        if schedule.paused == paused:
            return schedule
        schedule.paused = paused
        _reschedule(schedule, timezone.now())
        schedule.save()
        _audit(schedule, action="paused" if paused else "resumed", actor=actor)
    return schedule
