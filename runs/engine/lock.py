"""The one lock helper: `run_lock(run_id)` opens a transaction and locks the run row.

Everything that changes a run or its steps and gates happens inside it, re-reading state
under the lock. On PostgreSQL this is `SELECT … FOR UPDATE` of the run and of its audit
stream's head row (`sql.LOCK_RUN`); on SQLite, transactions begin IMMEDIATE (settings),
which serialises writers for the whole database.

Under the lock the engine changes the run and its steps in memory and marks them changed
(`run_changed`, `step_changed`); decisions and audit events are collected the same way,
and so are a holder's own statements about rows the engine does not keep
(`lock_statement`: an executor's lease ending with its report). When the block ends they
are written at once (`sql.write`), each row once, and the
transaction commits. The run then keeps its steps as written (`run.steps_left`), so a
service's caller can answer with the state it committed without reading it again.
"""

import threading
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial

from django.db import transaction
from django.utils import timezone

from audit.hashing import GENESIS_HASH
from audit.models import AuditStream
from audit.services import run_stream_name, stream_writer
from fcore.errors import NotFound
from fcore.held import run_held
from fcore.tenancy import tenant_known, tenants_known_clear
from gates.policies import (
    PolicySnapshot,
    policies_enabled_at,
    policies_enabled_of,
    policies_kept_clear,
    policies_stamp_sql,
)

from ..definitions import step_config, unknown_workflow
from ..models import Run, StepRun, WorkflowDefinition
from . import sql


def parse_run_id(value) -> uuid.UUID:
    """A run id from a URL or a task; anything that is not a UUID is simply not found."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("No such run.") from None


def parse_gate_id(value) -> int:
    """A gate id from a URL: a positive 63-bit integer, else not found."""
    try:
        gate_id = int(str(value))
    except ValueError:
        raise NotFound("No such gate.") from None
    if not 0 < gate_id < 2**63:
        raise NotFound("No such gate.")
    return gate_id


_definitions: dict[int, WorkflowDefinition] = {}


def process_caches_clear() -> None:
    """Forget cached definitions and slugs (tests: ids are reused after a rollback)."""
    _definitions.clear()
    tenants_known_clear()
    policies_kept_clear()


def definition_of(definition_id: int) -> WorkflowDefinition:
    """Definitions are immutable once published: each process reads one once."""
    definition = _definitions.get(definition_id)
    if definition is None:
        if len(_definitions) > 10_000:
            _definitions.clear()
        definition = _definitions[definition_id] = (
            WorkflowDefinition.objects.get(pk=definition_id))
    return definition


@dataclass
class Locked:
    """What a run lock holds besides the run: its steps by id (in definition order), its
    tenant's enabled policies, and what the block changed (`sql.RunWrites`)."""

    steps: dict[str, StepRun]
    policies: list[PolicySnapshot]
    writes: sql.RunWrites


def locked(run: Run) -> Locked:
    """The lock state of a run whose lock the caller holds."""
    held = getattr(run, "locked", None)
    if held is None:
        raise RuntimeError(f"run {run.pk} is used without its run lock")
    return held


def run_changed(run: Run) -> None:
    """The run's state changed: written when the lock's block ends."""
    locked(run).writes.run = run
    run.updated_at = timezone.now()


def step_changed(run: Run, step: StepRun) -> None:
    """The step's state changed: written when the lock's block ends."""
    locked(run).writes.steps[step.pk] = step


def lock_statement(run: Run, sql_text: str, params: list) -> None:
    """A statement of the lock holder's own, about a row the engine does not keep (an
    executor's lease), sent with the lock's writes in their round trip, before the
    commit."""
    locked(run).writes.statements.append((sql_text, params))


def steps_added(run: Run, parent: StepRun, added: list[StepRun]) -> None:
    """Steps inserted under the lock (a map step's instances, already in the database)
    join the lock's steps right after `parent`, where a fresh read would put them."""
    steps = locked(run).steps
    ordered = list(steps.items())
    steps.clear()
    for step_id, step in ordered:
        steps[step_id] = step
        if step is parent:
            steps.update((s.step_id, s) for s in added)


class _Memo(threading.local):
    """Inside `run_memo()`: the steps of the run whose lock this thread last committed, and
    the stream head its commit left. Every change of a run's steps appends to the run's
    audit stream in the same transaction (`_holding` refuses a change without an event),
    so while the stream's head is still that one, the steps are as this thread left them,
    and the next lock of that run does not read them again. The one
    step column changed without an event, `redeliveries`, is never read under the lock
    and never written by it (`sql.STEP_SAVE`); `lease_expires_at`, renewed without the
    lock, is written by the lock only with a new value, at a step's start or end."""

    active = False
    kept: tuple | None = None  # (run uuid, steps, head hash)

    def keep(self, run_uuid, steps: list, head_hash: str) -> None:
        if self.active:
            self.kept = (run_uuid, steps, head_hash)

    def take(self, run_uuid) -> tuple | None:
        kept, self.kept = self.kept, None
        return kept if self.active and kept and kept[0] == run_uuid else None


_memo = _Memo()


@contextmanager
def run_memo():
    """Let this thread's consecutive locks of one run skip re-reading what has not changed
    (the engine's chain of steps; see `_Memo`)."""
    if _memo.active:
        yield
        return
    _memo.active, _memo.kept = True, None
    try:
        yield
    finally:
        _memo.active, _memo.kept = False, None


def _read(run_uuid: uuid.UUID, tenant, memo: tuple | None) -> tuple:
    """(run, steps, stream head row, policies) for the lock: the run, its stream head and
    its policies' stamp in one statement (`sql.LOCK_RUN`), then its steps unless `memo`
    (see `_Memo`) holds them and the stream has not moved since. A run without a stream
    row yet is read without the join."""
    run, steps = sql.run_locked(run_uuid, run_stream_name(run_uuid),
                                tenant.id if tenant is not None else None,
                                policies_stamp_sql("r.tenant_id"), with_steps=memo is None)
    if run is None:
        return _read_unjoined(run_uuid, tenant)
    stream = _stream_of(run)
    if steps is None:
        # the stream has not moved since this thread's last commit: nor have the steps
        steps = memo[1] if memo[2] == stream.head_hash else sql.steps_of_run(run_uuid)
    return run, steps, stream, policies_enabled_at(run.tenant_id, run.policies_stamp)


def _stream_of(run: Run) -> AuditStream:
    """The head row of a run's stream, as its lock read it (`sql.LOCK_RUN`)."""
    return AuditStream(id=run.stream_pk, tenant_id=run.tenant_id, name=run.stream_name,
                       head_seq=run.stream_head_seq, head_hash=run.stream_head_hash)


def _read_unjoined(run_uuid, tenant) -> tuple:
    runs = Run.objects.select_for_update().filter(run_id=run_uuid)
    if tenant is not None:
        runs = runs.filter(tenant_id=tenant.id)
    run = runs.first()
    if run is None:
        return None, [], None, []
    return run, sql.steps_of_run(run_uuid), None, policies_enabled_of(run.tenant_id)


def run_definition(tenant, workflow: str, version: int | None = None
                   ) -> tuple[WorkflowDefinition, list[PolicySnapshot]]:
    """The definition a new run of `workflow` pins (at `version`, or the newest) and the
    tenant's enabled policies, in one statement (`sql.DEFINITION_CURRENT`); a 400
    `unknown_workflow` when there is none."""
    found = sql.definition_current(tenant.id, workflow, version,
                                   policies_stamp_sql("d.tenant_id"))
    if found is None:
        raise unknown_workflow(workflow, version)
    definition_id, stamp = found
    return definition_of(definition_id), policies_enabled_at(tenant.id, stamp)


def run_insert(*, tenant, definition: WorkflowDefinition, input: dict, metadata: dict,
               actor: str, actor_key: str, idempotency_key: str | None,
               request_hash: str, run_id: uuid.UUID | None = None,
               parent: tuple | None = None) -> tuple[Run, AuditStream, list[StepRun]]:
    """Insert a pending run of `definition` with its audit stream's head row and its steps
    (`sql.insert_run`), inside the caller's transaction; hold it with `run_held_new`.
    `parent`: (run uuid, step id) of the step that starts it as a child run."""
    now = timezone.now()
    run_uuid = run_id or uuid.uuid4()
    values = {"run_id": run_uuid, "tenant_id": tenant.id, "definition_id": definition.id,
              "status": "pending", "status_reason": "", "paused_for_gate": False,
              "current_step": "", "step_index": 0, "input": input, "output": None,
              "metadata": metadata, "created_by": actor, "created_by_key": actor_key,
              "idempotency_key": idempotency_key, "request_hash": request_hash,
              "workflow_hash": "", "created_at": now, "updated_at": now, "started_at": None,
              "ended_at": None, "parent_run_id": parent[0] if parent else None,
              "parent_step_id": parent[1] if parent else ""}
    steps = [{"step_id": s["id"], "step_type": s["type"], "index": i, "after": s["after"],
              "config": step_config(s)} for i, s in enumerate(definition.steps)]
    name = run_stream_name(run_uuid)
    run, stream_pk, new_steps = sql.insert_run(values, name, steps, GENESIS_HASH)
    run.definition, run.tenant = definition, tenant
    stream = AuditStream(id=stream_pk, tenant_id=tenant.id, name=name, head_seq=0,
                         head_hash=GENESIS_HASH)
    return run, stream, new_steps


@contextmanager
def run_held_new(run: Run, steps: list[StepRun], stream: AuditStream,
                 policies: list[PolicySnapshot]):
    """Hold a run just created in the caller's transaction as `run_lock` holds one (nobody
    else sees it before the commit); its changes are written when the block ends."""
    with _holding(run, steps, stream, policies):
        yield run


@contextmanager
def _holding(run: Run, steps: list[StepRun], stream: AuditStream | None, policies: list,
             send=sql.write):
    run.locked = held = Locked(steps={s.step_id: s for s in steps}, policies=policies,
                               writes=sql.RunWrites())
    with run_held(run.pk), stream_writer(tenant_id=run.tenant_id, stream=run.stream_name,
                                         row=stream, flush=False) as writer:
        yield
        events = writer.take()
    writes = held.writes
    if (writes.steps or writes.run) and not events:
        # The chain's memo (`_Memo`) trusts an unmoved stream head to mean unchanged steps.
        raise RuntimeError(f"run {run.pk}: state changed without an audit event")
    if events:
        writes.events = events
        writes.head = (writer.row.pk, events[-1].seq, events[-1].hash)
    send(writes)
    del run.locked
    run.steps_left = list(held.steps.values())


@contextmanager
def run_lock(run_id, *, tenant=None):
    """Yield the locked, freshly read run. Raises NotFound (also for another tenant's run).
    Its steps and its tenant's enabled policies are read with it (`locked(run)`); what the
    block changes is written when it ends, and the transaction commits. Inside
    `run_memo()`, the steps a committed lock leaves are kept for the next lock of the same
    run (`_Memo`)."""
    run_uuid = parse_run_id(run_id)
    memo = _memo.take(run_uuid)
    with transaction.atomic():
        run, steps, stream, policies = _read(run_uuid, tenant, memo)
        if run is None:
            raise NotFound("No such run.")
        run.definition = definition_of(run.definition_id)
        run.tenant = tenant if tenant is not None else tenant_known(run.tenant_id)
        with _holding(run, steps, stream, policies):
            held = run.locked  # with the instances a map step added under this lock
            yield run
        if _memo.active and stream is not None:  # the head the writes moved it to
            transaction.on_commit(partial(_memo.keep, run_uuid, list(held.steps.values()),
                                          stream.head_hash))


@contextmanager
def runs_lock_free(run_ids: list, *, tenant, limit: int):
    """Yield up to `limit` of the tenant's runs `run_ids`, in that order, locked in one
    transaction, each held as `run_lock` holds one (its steps and policies in
    `locked(run)`), passing over the runs another transaction holds instead of waiting
    for them (on PostgreSQL `FOR UPDATE … SKIP LOCKED`: executors claiming at once take
    different runs). What the block changes in them is written when it ends, in one round
    trip, and the transaction commits. On SQLite, whose transactions hold the whole
    database, the first `limit` that exist."""
    uuids = [parse_run_id(run_id) for run_id in run_ids]
    with transaction.atomic():
        found = sql.runs_locked_free(uuids, run_stream_name(""), tenant.id,
                                     policies_stamp_sql("r.tenant_id"), limit)
        if found is None:
            held = []
            for run_uuid in uuids:
                if len(held) < limit and (one := _read(run_uuid, tenant, None))[0] is not None:
                    held.append(one)
        else:
            held = [(run, steps, _stream_of(run),
                     policies_enabled_at(run.tenant_id, run.policies_stamp))
                    for run, steps in found]
        sent: list[sql.RunWrites] = []
        with ExitStack() as stack:
            for run, steps, stream, policies in held:
                run.definition, run.tenant = definition_of(run.definition_id), tenant
                stack.enter_context(_holding(run, steps, stream, policies, send=sent.append))
            yield [one[0] for one in held]
        sql.write(*sent)
