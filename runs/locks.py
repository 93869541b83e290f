"""The one lock helper: `run_lock(run_id)` opens a transaction and locks the run row.

Everything that changes a run or its steps and gates happens inside it, re-reading state
under the lock. On PostgreSQL this is `SELECT … FOR UPDATE`; on SQLite, transactions begin
IMMEDIATE (settings), which serialises writers for the whole database.
"""

import threading
import uuid
from contextlib import contextmanager
from functools import cache, partial

from django.db import connection, transaction

from audit.models import AuditStream
from audit.services import run_stream_name, stream_writer
from fcore.errors import NotFound
from fcore.models import Tenant
from fcore.rows import (
    Joined,
    atomic_batched,
    columns_sql,
    db_value,
    quote,
    rows_fetch_together,
)
from gates.policies import (
    policies_enabled_at,
    policies_enabled_of,
    policies_kept_clear,
    policies_stamp_sql,
)

from .models import Run, StepRun, WorkflowDefinition


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
_slugs: dict[int, str] = {}


def process_caches_clear() -> None:
    """Forget cached definitions and slugs (tests: ids are reused after a rollback)."""
    _definitions.clear()
    _slugs.clear()
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


def _tenant_of(tenant_id: int) -> Tenant:
    """The run's tenant with only id and slug loaded (a slug never changes); any other
    field is read from the database when first used, so it is never stale."""
    slug = _slugs.get(tenant_id)
    if slug is None:
        slug = _slugs[tenant_id] = Tenant.objects.values_list("slug", flat=True).get(
            pk=tenant_id)
    return Tenant.from_db(connection.alias, ["id", "slug"], [tenant_id, slug])


class _Memo(threading.local):
    """Inside `run_memo()`: the steps and stream head row of the run whose lock this thread
    last committed. Every change of a run's steps or status appends to the run's audit
    stream in the same transaction, so while the stream's head is still the one this thread
    wrote, they are as this thread left them, and the next `run_lock` of that run does not
    read them again. The fields written without an event, `lease_expires_at` and
    `redeliveries`, may be stale: the engine never reads them under the lock, and writes
    `lease_expires_at` only with a new value, never `redeliveries`."""

    active = False
    kept: tuple | None = None  # (run uuid, steps, stream row)

    def keep(self, run_uuid, steps: list, stream: AuditStream) -> None:
        if self.active:
            self.kept = (run_uuid, steps, stream)

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


@cache
def _lock_sql(with_tenant: bool, vendor: str) -> str:
    """The run and its stream's head row, both locked, and the stamp of its tenant's
    policies (`policies_stamp_sql`), in one statement."""
    run, stream = quote(Run._meta.db_table), quote(AuditStream._meta.db_table)
    stamp = policies_stamp_sql(f"{run}.{quote('tenant_id')}")
    sql = (f"SELECT {columns_sql(Run, vendor)}, {columns_sql(AuditStream, vendor)}, {stamp}"
           f" FROM {run} INNER JOIN {stream} ON {stream}.{quote('name')} = %s"
           f" WHERE {run}.{quote('run_id')} = %s")
    if with_tenant:
        sql += f" AND {run}.{quote('tenant_id')} = %s"
    if connection.features.has_select_for_update_of:
        sql += f" FOR UPDATE OF {run}, {stream}"
    elif connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql


def _fetch_locked(run_uuid: uuid.UUID, tenant, memo: tuple | None) -> tuple:
    """The run, locked, and with it in one statement its audit stream's head row and the
    stamp of its tenant's enabled policies; in the same round trip its steps, unless `memo`
    (see `_Memo`) holds them and the stream has not moved since. The policies come from
    `policies_enabled_at`, read only when their stamp has moved.

    The stream's row is locked as well, though every writer of it holds the run lock: in
    PostgreSQL's READ COMMITTED, a locked row found changed is read again at its newest
    version, an unlocked joined one is not, so a head committed by the lock's previous
    holder would otherwise be missed. A run without a stream row yet (or no such run) is
    read without the join."""
    run_id = db_value(Run, "run_id", run_uuid)
    params = [run_stream_name(run_uuid), run_id] + ([tenant.id] if tenant is not None else [])
    locked = Joined((Run, AuditStream), _lock_sql(tenant is not None, connection.vendor),
                    params)
    steps_query = (StepRun, "run_id = %s", [run_id], quote("index"), False)
    found, *steps = rows_fetch_together(locked, *([steps_query] if memo is None else []))
    if not found:
        return _fetch_locked_unjoined(run_id, tenant, steps_query)
    run, stream, stamp = found[0]
    if memo is None:
        steps = steps[0]
    elif stream.head_hash == memo[2].head_hash:  # the stream has not moved: nor have the steps
        steps = memo[1]
    else:
        steps = rows_fetch_together(steps_query)[0]
    return run, steps, stream, policies_enabled_at(run.tenant_id, stamp)


def _fetch_locked_unjoined(run_id, tenant, steps_query: tuple) -> tuple:
    where, params = "run_id = %s", [run_id]
    if tenant is not None:
        where, params = "run_id = %s AND tenant_id = %s", [run_id, tenant.id]
    runs, steps = rows_fetch_together((Run, where, params, "", True), steps_query)
    if not runs:
        return None, [], None, []
    return runs[0], steps, None, policies_enabled_of(runs[0].tenant_id)


@contextmanager
def run_lock(run_id, *, tenant=None):
    """Yield the locked, freshly read run. Raises NotFound (also for another tenant's run).
    Its steps and enabled policies are read with it (`run.prefetched`, taken once by
    `steps_of` and `run_policies`); audit events appended to the run's stream inside are
    written together at the end, and on PostgreSQL every write is sent in one round trip
    with the COMMIT (`atomic_batched`). Every writer of a run's stream holds this lock, so
    the stream's head is read, not locked, and moved with a compare-and-set. Inside
    `run_memo()`, what a committed lock leaves is kept for the next lock of the same run
    (`_Memo`)."""
    run_uuid = parse_run_id(run_id)
    memo = _memo.take(run_uuid)
    with atomic_batched():
        run, steps, stream, policies = _fetch_locked(run_uuid, tenant, memo)
        if run is None:
            raise NotFound("No such run.")
        run.definition = definition_of(run.definition_id)
        run.tenant = tenant if tenant is not None else _tenant_of(run.tenant_id)
        run.prefetched = {"steps": steps, "policies": policies}
        with stream_writer(tenant_id=run.tenant_id, stream=run.stream_name, row=stream):
            yield run
        if _memo.active and stream is not None and not getattr(run, "steps_reread", False):
            transaction.on_commit(partial(_memo.keep, run_uuid, steps, stream))
