"""The one lock helper: `run_lock(run_id)` opens a transaction and locks the run row.

Everything that changes a run or its steps and gates happens inside it, re-reading state
under the lock. On PostgreSQL this is `SELECT … FOR UPDATE`; on SQLite, transactions begin
IMMEDIATE (settings), which serialises writers for the whole database.
"""

from contextlib import contextmanager

from django.db import transaction

from fcore.errors import NotFound

from .models import Run


@contextmanager
def run_lock(run_id, *, tenant=None):
    """Yield the locked, freshly read run. Raises NotFound (also for another tenant's run)."""
    with transaction.atomic():
        qs = Run.objects.select_for_update(of=("self",)).select_related("definition")
        if tenant is not None:
            qs = qs.filter(tenant=tenant)
        try:
            run = qs.get(pk=run_id)
        except (Run.DoesNotExist, ValueError):
            raise NotFound("No such run.") from None
        yield run
