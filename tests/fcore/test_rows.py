"""`fcore.rows` builds instances without `Model.__init__` (`_built`): they must be the
instances the ORM would build."""

import warnings

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.utils import timezone

from audit.models import AuditEvent, AuditStream
from fcore.models import Tenant
from fcore.rows import (
    _grouped_sql,
    _numbered,
    _prepared,
    _preparers,
    db_value,
    insert_params_max,
    row_new,
    rows_fetch,
    rows_insert,
)
from runs.definitions import definition_publish
from runs.models import Run, StepRun, StepStatus
from runs.services import run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    tenant = Tenant.objects.create(slug="tenant_rows", name="Rows")
    definition_publish(tenant=tenant, name="pair", actor="user:priya",
                       steps=[{"id": "a", "type": "external"},
                              {"id": "b", "type": "noop", "after": ["a"],
                               "retry": {"max_attempts": 2, "backoff": 1, "max_backoff": 2}}])
    created, _ = run_create(tenant=tenant, workflow="pair", input={"amount": 5},
                            actor="user:olivia")
    return created


def fetched_steps(run) -> list[StepRun]:
    return rows_fetch(StepRun, "run_id = %s", [db_value(Run, "run_id", run.pk)],
                      order_by='"index"')


def test_fetched_rows_are_the_instances_the_orm_builds(run):
    fetched, orm = fetched_steps(run), list(StepRun.objects.filter(run=run).order_by("index"))
    names = [f.attname for f in StepRun._meta.concrete_fields]
    assert [[getattr(s, n) for n in names] for s in fetched] == \
        [[getattr(s, n) for n in names] for s in orm]
    assert fetched[0].status == StepStatus.RUNNING and fetched[0].input == {"amount": 5}
    assert all(not s._state.adding and s._state.db == "default" for s in fetched)
    # They behave as ORM instances: related objects, FSM transitions, save.
    step = fetched[0]
    assert step.run == Run.objects.get(pk=run.pk)
    step.succeed()
    step.save(update_fields=["status"])
    assert StepRun.objects.get(pk=step.pk).status == StepStatus.SUCCEEDED


def test_new_instances_hold_every_value_and_are_unsaved(run):
    stream = AuditStream.objects.get(name=run.stream_name)
    values = dict(stream_id=stream.id, tenant_id=run.tenant_id, seq=99, code="FC-TEST-1",
                  actor="user:olivia", at="2026-11-21T00:00:00.000000Z",
                  occurred_at=timezone.now(), data={"k": 1}, prev_hash="0" * 64,
                  hash="f" * 64)
    built, orm = row_new(AuditEvent, **values), AuditEvent(**values)
    names = [f.attname for f in AuditEvent._meta.concrete_fields]
    assert [getattr(built, n) for n in names] == [getattr(orm, n) for n in names]
    assert built.pk is None and built._state.adding and built._state.db is None
    assert built.stream == stream


def test_new_instances_refuse_missing_and_unknown_fields():
    with pytest.raises(TypeError, match=r"missing \['tenant_id'\], unknown \['tenant'\]"):
        row_new(AuditStream, tenant=1, name="x", head_seq=0, head_hash="",
                created_at=None, updated_at=None, unsealed=True)


def test_a_model_with_init_receivers_is_built_the_ordinary_way(run):
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.step_id)

    post_init.connect(receiver, sender=StepRun)
    try:
        fetched = fetched_steps(run)
    finally:
        post_init.disconnect(receiver, sender=StepRun)
    assert seen == [s.step_id for s in fetched] == ["a", "b"]


@pytest.mark.parametrize("count", [20, 700])
def test_many_rows_go_in_few_statements_with_their_ids(count, django_assert_num_queries):
    tenant = Tenant.objects.create(slug="tenant_many", name="Many")
    streams = [AuditStream(tenant_id=tenant.id, name=f"s/{n}") for n in range(count)]
    per_statement = insert_params_max(connection.vendor) // 7  # seven columns to insert
    with django_assert_num_queries(-(-count // per_statement)):
        rows_insert(AuditStream, streams, returning=True)
    stored = dict(AuditStream.objects.filter(tenant=tenant).values_list("name", "id"))
    assert [s.id for s in streams] == [stored[f"s/{n}"] for n in range(count)]
    assert all(not s._state.adding for s in streams)


def test_statements_are_numbered_for_postgresql():
    assert _numbered("UPDATE t SET a = %s, b = '%%' WHERE id = %s") == \
        "UPDATE t SET a = $1, b = '%' WHERE id = $2"
    sql = _grouped_sql(("UPDATE t SET a = %s WHERE id = %s", "INSERT INTO u (c) VALUES (%s)"))
    assert _numbered(sql) == ("WITH w0 AS (UPDATE t SET a = $1 WHERE id = $2) "
                              "INSERT INTO u (c) VALUES ($3)")


def test_values_go_to_the_database_as_the_orm_prepares_them():
    """What `_prepared` passes through unchanged (None, str, int, bool, an aware datetime on
    PostgreSQL) the fields would have prepared to the same; anything else goes through
    the field (a naive datetime is made aware, with Django's warning)."""
    now = timezone.now()
    samples = {"started_at": [now, now.replace(tzinfo=None), None], "attempt": [3, None],
               "status": ["running"], "output": [{"a": [1]}, None], "step_id": ["s1"]}
    for name, values in samples.items():
        field = StepRun._meta.get_field(name)
        preparers = _preparers((field,), connection.vendor)
        for value in values:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the naive datetime
                ours = _prepared(preparers, [value], connection)[0]
                orm = field.get_db_prep_save(value, connection)
            # (an int may come back from the field as psycopg's Int4: the same number)
            assert getattr(ours, "obj", ours) == getattr(orm, "obj", orm), (name, value)
            assert (ours is None) == (orm is None)
