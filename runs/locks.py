"""The one lock helper: `run_lock(run_id)` opens a transaction and locks the run row.

Everything that changes a run or its steps and gates happens inside it, re-reading state
under the lock. On PostgreSQL this is `SELECT … FOR UPDATE`; on SQLite, transactions begin
IMMEDIATE (settings), which serialises writers for the whole database.
"""

import uuid
from contextlib import contextmanager

from django.db import connection, transaction

from audit.services import stream_writer
from fcore.errors import NotFound
from fcore.models import Tenant
from fcore.rows import db_value, rows_fetch

from .models import Run, WorkflowDefinition


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


@contextmanager
def run_lock(run_id, *, tenant=None):
    """Yield the locked, freshly read run. Raises NotFound (also for another tenant's run).
    Audit events appended to the run's stream inside are written together at the end."""
    run_id = db_value(Run, "run_id", parse_run_id(run_id))
    with transaction.atomic():
        if tenant is not None:
            found = rows_fetch(Run, "run_id = %s AND tenant_id = %s", [run_id, tenant.id],
                               for_update=True)
        else:
            found = rows_fetch(Run, "run_id = %s", [run_id], for_update=True)
        if not found:
            raise NotFound("No such run.")
        run = found[0]
        run.definition = definition_of(run.definition_id)
        run.tenant = tenant if tenant is not None else _tenant_of(run.tenant_id)
        with stream_writer(tenant_id=run.tenant_id, stream=run.stream_name):
            yield run
