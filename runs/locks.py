"""The one lock helper: `run_lock(run_id)` opens a transaction and locks the run row.

Everything that changes a run or its steps and gates happens inside it, re-reading state
under the lock. On PostgreSQL this is `SELECT … FOR UPDATE`; on SQLite, transactions begin
IMMEDIATE (settings), which serialises writers for the whole database.
"""

import uuid
from contextlib import contextmanager

from django.db import connection, transaction

from audit.models import AuditStream
from audit.services import run_stream_name, stream_writer
from fcore.errors import NotFound
from fcore.models import Tenant
from fcore.rows import db_value, quote, rows_fetch_together, writes_batched
from gates.models import Policy

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


def _fetch_locked(run_uuid: uuid.UUID, tenant) -> tuple:
    """The run, locked, and with it in one round trip what the engine reads next: its
    steps, its audit stream's head row and its tenant's enabled policies."""
    run_id = db_value(Run, "run_id", run_uuid)
    where, params = "run_id = %s", [run_id]
    if tenant is not None:
        where, params = "run_id = %s AND tenant_id = %s", [run_id, tenant.id]
    runs, steps, streams, policies = rows_fetch_together(
        (Run, where, params, "", True),
        (StepRun, "run_id = %s", [run_id], quote("index"), False),
        (AuditStream, "name = %s", [run_stream_name(run_uuid)], "", False),
        (Policy, "tenant_id = (SELECT tenant_id FROM runs_run WHERE run_id = %s) "
                 "AND enabled = %s AND version > 0", [run_id, True], "tier DESC, name", False))
    return (runs[0] if runs else None), steps, (streams[0] if streams else None), policies


@contextmanager
def run_lock(run_id, *, tenant=None):
    """Yield the locked, freshly read run. Raises NotFound (also for another tenant's run).
    Its steps and enabled policies are read with it (`run.prefetched`, taken once by
    `steps_of` and `run_policies`); audit events appended to the run's stream inside are
    written together at the end, and on PostgreSQL every write is sent in one round trip
    (`writes_batched`). Every writer of a run's stream holds this lock, so the stream's
    head is read, not locked, and moved with a compare-and-set."""
    run_uuid = parse_run_id(run_id)
    with transaction.atomic(), writes_batched():
        run, steps, stream, policies = _fetch_locked(run_uuid, tenant)
        if run is None:
            raise NotFound("No such run.")
        run.definition = definition_of(run.definition_id)
        run.tenant = tenant if tenant is not None else _tenant_of(run.tenant_id)
        run.prefetched = {"steps": steps, "policies": policies}
        with stream_writer(tenant_id=run.tenant_id, stream=run.stream_name, row=stream):
            yield run
