"""The one lock helper: `run_lock(run_id)` opens a transaction and locks the run row.

Everything that changes a run or its steps and gates happens inside it, re-reading state
under the lock. On PostgreSQL this is `SELECT … FOR UPDATE`; on SQLite, transactions begin
IMMEDIATE (settings), which serialises writers for the whole database.
"""

import uuid
from contextlib import contextmanager

from django.db import transaction

from audit.services import stream_writer
from fcore.errors import NotFound

from .models import Run


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


@contextmanager
def run_lock(run_id, *, tenant=None):
    """Yield the locked, freshly read run. Raises NotFound (also for another tenant's run).
    Audit events appended to the run's stream inside are written together at the end."""
    with transaction.atomic():
        qs = (Run.objects.select_for_update(of=("self",))
              .select_related("definition", "tenant"))
        if tenant is not None:
            qs = qs.filter(tenant=tenant)
        try:
            run = qs.get(pk=parse_run_id(run_id))
        except Run.DoesNotExist:
            raise NotFound("No such run.") from None
        with stream_writer(tenant_id=run.tenant_id, stream=run.stream_name):
            yield run
