"""The rows the engine updates on every step keep no index on a column those updates change,
so PostgreSQL can update them in place (HOT) instead of adding an entry to every index; and
the uniqueness that the dropped indexes used to give is still enforced where it matters."""

import pytest
from django.db import IntegrityError, connection, transaction

from audit.models import AuditStream
from fcore.models import Tenant

# What every append (stream head) and every step (run) writes; see audit.services.StreamWriter
# and runs.engine.advance_locked.
UPDATED_ON_EVERY_STEP = {
    "audit_auditstream": {"head_seq", "head_hash", "updated_at"},
    "runs_run": {"current_step", "step_index", "updated_at"},
}


def _indexed_columns(table: str) -> dict[str, set]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {name: set(info["columns"] or []) for name, info in constraints.items()
            if info["index"] or info["unique"] or info["primary_key"]}


@pytest.mark.django_db
@pytest.mark.parametrize("table", sorted(UPDATED_ON_EVERY_STEP))
def test_no_index_covers_a_column_updated_on_every_step(table):
    indexes = _indexed_columns(table)
    assert indexes, f"{table} has no index at all: introspection is not reading it"
    hot = UPDATED_ON_EVERY_STEP[table]
    assert {name: cols & hot for name, cols in indexes.items() if cols & hot} == {}


@pytest.mark.django_db
def test_stream_names_are_still_unique():
    tenant = Tenant.objects.create(slug="tenant_streams", name="Streams")
    AuditStream.objects.create(tenant=tenant, name="run/one")
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditStream.objects.create(tenant=tenant, name="run/one")
    assert AuditStream.objects.filter(name="run/one").count() == 1
