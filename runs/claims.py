"""Executors claim external steps (DESIGN §12): claims, leases, heartbeats, redelivery.

Invariants:

- a step is claimable while it is a running external step (`external`, `external:<name>`)
  of a running run with no lease for its attempt (`StepLease`, one row per step at most:
  two executors never hold the same step);
- a claim takes each step under its run lock (`runs_lock_free`: the runs of several
  steps locked at once, passing over runs another transaction holds; re-read, then
  lease), so a claim racing a cancel or a report sees the step as it is; the leases and
  their `FC-STEP-006` events are written in that transaction. The executor gets the token
  once; only its SHA-256 is stored;
- a report of a claimed step must carry the current, unexpired token (`lease_check`,
  called by `runs.services.step_report` under the lock), else 409 `lease_lost`; a step
  nobody claimed is reported without one, as before;
- an expired lease (`leases_expire`, from the sweeper for every tenant and from every
  claim for the claiming tenant's) makes the step claimable again, same attempt,
  `FC-STEP-007`; after FCORE_STEP_MAX_REDELIVERIES the attempt fails with `lease_lost`, as
  a lost internal step's does (retried when the step has retries left).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.codes import Code
from audit.services import audit_append
from fcore.actors import SCHEDULER
from fcore.errors import Conflict, ErrorCode, NotFound
from fcore.rows import Rows

from . import engine
from .definitions import is_external
from .handlers import StepError
from .models import RunStatus, StepLease, StepRun, StepStatus
from .wakeups import RECHECK_S, steps_ready_announce, steps_ready_listener

MAX_TASKS = 50
MAX_WAIT_S = 30
LEASE_S_RANGE = (5, 600)
EXPIRE_BATCH = 200
LIVE = (RunStatus.RUNNING, RunStatus.PAUSED)

# The lease of a step's attempt: read under the run lock by every report (`fcore.rows`),
# and deleted once the report is recorded.
LEASE_OF_ATTEMPT = Rows(StepLease, """
    SELECT {columns} FROM runs_steplease l WHERE l.step_id = %s AND l.attempt = %s""",
                        alias="l")
LEASE_DELETE = "DELETE FROM runs_steplease WHERE id = %s"
# Leases past their expiry (`leases_expire`, from every claim: one indexed query when
# nothing is due), of every tenant or of one.
EXPIRED = """
    SELECT l.id, l.run_id FROM runs_steplease l WHERE l.expires_at < %s LIMIT %s"""
EXPIRED_OF_TENANT = """
    SELECT l.id, l.run_id FROM runs_steplease l JOIN runs_run r ON r.run_id = l.run_id
     WHERE l.expires_at < %s AND r.tenant_id = %s LIMIT %s"""


@dataclass
class ClaimedTask:
    """One claimed step, as the executor receives it (the token only here, once)."""

    run_id: str
    step_id: str
    attempt: int
    workflow: str
    step_type: str
    input: dict
    lease_token: str
    lease_expires_at: str

    def as_dict(self) -> dict:
        return asdict(self)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _in(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _candidates_sql(step_types: list, workflows: list) -> str:
    """The claimable steps of a tenant, oldest first: running external steps (of
    `step_types`, when given) of its running runs (of `workflows`, when given) with no
    lease for their attempt. Written out: every claim runs it, and again at each wake-up
    of a waiting claim, where building the ORM's query cost three times running it."""
    kinds = (f"st.step_type IN ({_in(step_types)})" if step_types else
             "(st.step_type = 'external' OR st.step_type LIKE 'external:%%')")
    of_workflows = (f"AND r.definition_id IN (SELECT d.id FROM runs_workflowdefinition d "
                    f"WHERE d.name IN ({_in(workflows)}))" if workflows else "")
    return f"""
        SELECT st.run_id, st.step_id FROM runs_steprun st
          JOIN runs_run r ON r.run_id = st.run_id
         WHERE r.tenant_id = %s AND r.status = 'running' AND st.status = 'running'
           AND {kinds} {of_workflows}
           AND NOT EXISTS (SELECT 1 FROM runs_steplease l
                            WHERE l.step_id = st.id AND l.attempt = st.attempt)
         ORDER BY st.started_at, st.id LIMIT %s"""


def _candidates(tenant, step_types, workflows, limit: int) -> list[tuple]:
    """(run_id, step_id) of claimable steps, oldest first; read without a lock (each is
    re-checked under its run's lock)."""
    with connection.cursor() as cursor:
        cursor.execute(_candidates_sql(step_types, workflows),
                       [tenant.id, *step_types, *workflows, limit])
        return [(engine.parse_run_id(run_id), step_id) for run_id, step_id in cursor]


def _claimable(run, step_types, workflows) -> list[StepRun]:
    """The run's steps an executor may claim, as its lock reads them, oldest first."""
    if run.status != RunStatus.RUNNING or (workflows and run.definition.name not in workflows):
        return []
    steps = [s for s in engine.steps_of(run).values()
             if s.status == StepStatus.RUNNING and is_external(s.step_type)
             and (not step_types or s.step_type in step_types)]
    return sorted(steps, key=lambda s: (s.started_at, s.pk))


def _lease(claimable: list[tuple], *, actor: str, lease_s: int, room: int) -> list[tuple]:
    """Under the locks of the runs of `claimable` ((run, its claimable steps) each):
    (run, step, token, lease) for up to `room` steps that no executor holds, each with
    its `FC-STEP-006` event; the caller inserts the leases."""
    steps = {step.pk: step for _, run_steps in claimable for step in run_steps}
    leases = list(StepLease.objects.filter(step_id__in=list(steps)))
    held = {lease.step_id for lease in leases if lease.attempt == steps[lease.step_id].attempt}
    stale = [lease.pk for lease in leases if lease.step_id not in held]
    if stale:
        StepLease.objects.filter(pk__in=stale).delete()  # left by earlier attempts
    now = timezone.now()
    taken = []
    for run, run_steps in claimable:
        for step in run_steps:
            if len(taken) >= room or step.pk in held:
                continue  # held (or expired, waiting for `leases_expire`)
            token = secrets.token_urlsafe(32)
            lease = StepLease(step=step, run=run, attempt=step.attempt,
                              token_hash=token_hash(token), holder=actor, lease_s=lease_s,
                              claimed_at=now, expires_at=now + timedelta(seconds=lease_s))
            audit_append(tenant_id=run.tenant_id, stream=run.stream_name,
                         code=Code.STEP_CLAIMED, actor=actor,
                         data={"step_id": step.step_id, "attempt": step.attempt,
                               "lease_s": lease_s,
                               "lease_expires_at": lease.expires_at.isoformat()})
            taken.append((run, step, token, lease))
    return taken


def _claim_once(*, tenant, actor: str, step_types, workflows, max: int,
                lease_s: int) -> list[ClaimedTask]:
    """Claim from the oldest claimable steps: lock the runs of as many as are wanted that
    no other claim or report holds (`engine.runs_lock_free`), re-check them under those
    locks and lease them, all in one transaction; again with the next runs while some
    were found taken meanwhile."""
    candidates = _candidates(tenant, step_types, workflows, limit=max * 4 + 8)
    run_ids = list(dict.fromkeys(run_id for run_id, _ in candidates))
    tasks: list[ClaimedTask] = []
    while run_ids and len(tasks) < max:
        with engine.runs_lock_free(run_ids, tenant=tenant, limit=max - len(tasks)) as runs:
            claimable = [(run, steps) for run in runs
                         if (steps := _claimable(run, step_types, workflows))]
            taken = _lease(claimable, actor=actor, lease_s=lease_s,
                           room=max - len(tasks)) if claimable else []
            StepLease.objects.bulk_create([lease for _, _, _, lease in taken])
        if not runs:
            break  # every one left is held by another transaction
        tried = {run.run_id for run in runs}
        run_ids = [run_id for run_id in run_ids if run_id not in tried]
        tasks += [ClaimedTask(run_id=str(run.run_id), step_id=step.step_id,
                              attempt=step.attempt, workflow=run.definition.name,
                              step_type=step.step_type, input=step.input or {},
                              lease_token=token, lease_expires_at=lease.expires_at.isoformat())
                  for run, step, token, lease in taken]
    return tasks


def tasks_claim(*, tenant, actor: str, step_types: list[str] | None = None,
                workflows: list[str] | None = None, max: int = 1, wait_s: float = 0,
                lease_s: int = 60) -> list[ClaimedTask]:
    """Claim up to `max` claimable external steps of the tenant; with `wait_s`, wait for
    the first ones to arrive (woken by `runs.wakeups`, not by polling). Arguments are
    validated by the caller (the API serializer): 1 ≤ max ≤ 50, 0 ≤ wait_s ≤ 30,
    5 ≤ lease_s ≤ 600."""
    step_types, workflows = list(step_types or []), list(workflows or [])
    args = {"tenant": tenant, "actor": actor, "step_types": step_types,
            "workflows": workflows, "max": max, "lease_s": lease_s}
    leases_expire(tenant=tenant)
    tasks = _claim_once(**args)
    if tasks or wait_s <= 0:
        return tasks
    deadline = time.monotonic() + wait_s
    with steps_ready_listener(tenant.id) as listener:
        while not tasks and (left := deadline - time.monotonic()) > 0:
            if not transaction.get_connection().in_atomic_block:
                connection.close()  # a waiting claim holds no database connection
            listener.wait(min(left, RECHECK_S))
            leases_expire(tenant=tenant)
            tasks = _claim_once(**args)
    return tasks


def _lost(step_id: str, detail: str) -> Conflict:
    return Conflict(f"Step {step_id}: {detail}", code=ErrorCode.LEASE_LOST)


def lease_check(run, step: StepRun, lease_token: str | None) -> StepLease | None:
    """Under the run lock, before a report is recorded: the lease the report ends (None for
    a step nobody claimed). 409 `lease_lost` for a claimed step reported without its
    current token, and for a token that is not (or no longer) the step's lease."""
    lease = LEASE_OF_ATTEMPT.first([step.pk, step.attempt])
    if lease_token is None:
        if lease is not None:
            raise _lost(step.step_id, "it is claimed by an executor; report with its "
                                      "lease_token")
        return None
    if lease is None or not hmac.compare_digest(lease.token_hash, token_hash(lease_token)):
        raise _lost(step.step_id, "this lease is not the step's current lease")
    if lease.expires_at <= timezone.now():
        raise _lost(step.step_id, "this lease expired")
    return lease


def lease_heartbeat(*, tenant, run_id, step_id: str, lease_token: str,
                    lease_s: int | None = None) -> StepLease:
    """Extend a live lease by `lease_s` (default: the claim's) from now. 409 `lease_lost`
    when the token is not the step's live lease (expired, redelivered, reported)."""
    now = timezone.now()
    digest = token_hash(lease_token)
    lease = (StepLease.objects.select_related("step")
             .filter(run_id=engine.parse_run_id(run_id), run__tenant_id=tenant.id,
                     step__step_id=step_id).first())
    if lease is None:
        if not StepRun.objects.filter(run_id=engine.parse_run_id(run_id),
                                      run__tenant_id=tenant.id, step_id=step_id).exists():
            raise NotFound(f"Run has no step {step_id!r}.")
        raise _lost(step_id, "it holds no lease")
    if (not hmac.compare_digest(lease.token_hash, digest)
            or lease.step.status != StepStatus.RUNNING or lease.step.attempt != lease.attempt):
        raise _lost(step_id, "this lease is not the step's current lease")
    seconds = lease_s or lease.lease_s
    extended = StepLease.objects.filter(pk=lease.pk, token_hash=digest, expires_at__gt=now
                                        ).update(expires_at=now + timedelta(seconds=seconds))
    if not extended:
        raise _lost(step_id, "this lease expired")
    lease.refresh_from_db()
    return lease


def leases_expire(*, now=None, tenant=None) -> int:
    """End every lease past its expiry (of `tenant` only, when given): the step is
    claimable again (same attempt, `FC-STEP-007`), or, after FCORE_STEP_MAX_REDELIVERIES,
    its attempt fails (`lease_lost`). Idempotent; returns how many leases it ended."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(EXPIRED if tenant is None else EXPIRED_OF_TENANT,
                       [connection.ops.adapt_datetimefield_value(now),
                        *([] if tenant is None else [tenant.id]), EXPIRE_BATCH])
        due = cursor.fetchall()
    ended = 0
    for lease_pk, run_id in due:
        with engine.run_lock(run_id) as run:
            lease = StepLease.objects.filter(pk=lease_pk, expires_at__lt=now).first()
            if lease is None:
                continue  # extended or ended meanwhile
            ended += 1
            steps = engine.steps_of(run)
            step = next((s for s in steps.values() if s.pk == lease.step_id), None)
            lease.delete()
            if (step is None or step.status != StepStatus.RUNNING
                    or step.attempt != lease.attempt or run.status not in LIVE):
                continue  # the step moved on without its executor: nothing to redeliver
            _lease_expired(run, steps, step, lease)
    return ended


def _lease_expired(run, steps, step: StepRun, lease: StepLease) -> None:
    redeliveries = StepRun.objects.values_list("redeliveries", flat=True).get(pk=step.pk)
    if redeliveries >= settings.FCORE_STEP_MAX_REDELIVERIES:
        engine.step_conclude(run, steps, step, succeeded=False, output=None, actor=SCHEDULER,
                             error={"code": str(StepError.LEASE_LOST),
                                    "detail": f"lease expired {redeliveries + 1} times: "
                                              "its executors keep dying"})
        return
    # the one step column written without the lock's writes (see `runs.engine.lock._Memo`)
    StepRun.objects.filter(pk=step.pk).update(redeliveries=F("redeliveries") + 1)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name,
                 code=Code.STEP_LEASE_EXPIRED, actor=SCHEDULER,
                 data={"step_id": step.step_id, "attempt": step.attempt,
                       "holder": lease.holder, "redelivery": redeliveries + 1})
    steps_ready_announce(run.tenant_id)


def lease_end(run, lease: StepLease | None) -> None:
    """The report a lease was for is recorded: the lease ends, deleted with the run lock's
    writes (same transaction)."""
    if lease is not None:
        engine.lock_statement(run, LEASE_DELETE, [lease.pk])
