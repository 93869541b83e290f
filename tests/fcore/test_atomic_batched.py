"""`fcore.rows.atomic_batched`: as the outermost transaction on PostgreSQL, its last writes
and the COMMIT go in one round trip. Nothing may commit that should not: a failed write, a
row count still to be read, an enclosing transaction. These tests commit for real."""

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from psycopg import pq

from audit.models import AuditEvent, AuditStream
from audit.services import audit_append, stream_writer
from audit.verify import audit_verify
from fcore.models import Tenant
from fcore.rows import RowChanged, atomic_batched, row_update, rows_fetch, rows_insert
from runs.definitions import definition_publish
from runs.models import Run, RunStatus
from runs.services import run_create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (run with DATABASE_URL=postgres://…)")


@pytest.fixture
def tenant():
    return Tenant.objects.create(slug="tenant_batched", name="Batched")


@pytest.fixture
def commits(monkeypatch):
    """The transaction status psycopg finds at each commit Django asks for."""
    seen, commit = [], psycopg.Connection.commit

    def spy(self):
        seen.append(pq.TransactionStatus(self.pgconn.transaction_status).name)
        return commit(self)

    monkeypatch.setattr(psycopg.Connection, "commit", spy)
    return seen


def stream(tenant, name) -> AuditStream:
    return AuditStream(tenant_id=tenant.id, name=name)


def names(tenant) -> list[str]:
    return sorted(AuditStream.objects.filter(tenant=tenant).values_list("name", flat=True))


def test_the_last_writes_go_with_the_commit(tenant, commits):
    done = []
    with atomic_batched():
        rows_insert(AuditStream, [stream(tenant, "s/1")], returning=True)
        row = rows_fetch(AuditStream, "name = %s", ["s/1"])[0]
        row.head_seq = 7
        row_update(row, ("head_seq", "updated_at"))
        transaction.on_commit(lambda: done.append("hook"))
    # Django's commit found the transaction already committed, and ran its hooks.
    assert commits == ["IDLE"] and done == ["hook"]
    assert AuditStream.objects.get(name="s/1").head_seq == 7


def test_ids_read_later_arrive_with_the_next_round_trip(tenant):
    first, second = stream(tenant, "s/a"), stream(tenant, "s/b")
    with atomic_batched():
        rows_insert(AuditStream, [first], returning=True, now=False)
        assert first.pk is None  # held
        rows_insert(AuditStream, [second], returning=True)
        assert (first.pk, second.pk) == tuple(
            AuditStream.objects.filter(name__in=["s/a", "s/b"]).order_by("name")
            .values_list("id", flat=True))


def writes_sent(sent) -> list[str]:
    return [q["sql"] for q in sent if q["sql"].startswith(("UPDATE", "INSERT", "WITH"))]


def test_held_updates_of_one_row_go_as_one_update(tenant):
    row = AuditStream.objects.create(tenant=tenant, name="s/one")
    other = AuditStream.objects.create(tenant=tenant, name="s/two")
    with CaptureQueriesContext(connection) as sent, atomic_batched():
        row.head_seq = 1
        row_update(row, ("head_seq",))
        other.head_seq = 5
        row_update(other, ("head_seq",))
        row.head_seq, row.head_hash = 2, "a" * 64
        row_update(row, ("head_hash", "head_seq"))
    # other's update, then row's two merged into one, both in one statement
    assert [sql.replace(" WHERE", "|").split("|")[0] for sql in writes_sent(sent)] == [
        'WITH w0 AS (UPDATE "audit_auditstream" SET "head_seq" = $1']
    assert 'UPDATE "audit_auditstream" SET "head_seq" = $3, "head_hash" = $4' in \
        writes_sent(sent)[0]
    assert sorted(AuditStream.objects.filter(tenant=tenant)
                  .values_list("name", "head_seq", "head_hash")) == [
        ("s/one", 2, "a" * 64), ("s/two", 5, "0" * 64)]


def test_held_writes_that_do_not_depend_on_each_other_go_as_one_statement(tenant):
    first = AuditStream.objects.create(tenant=tenant, name="s/first")
    second = AuditStream.objects.create(tenant=tenant, name="s/second")
    with CaptureQueriesContext(connection) as sent, atomic_batched():
        first.head_seq, second.head_seq = 4, 5
        row_update(first, ("head_seq",))
        row_update(second, ("head_seq",))
        rows_insert(Tenant, [Tenant(slug="tenant_batched_2", name="Two"),
                             Tenant(slug="tenant_batched_3", name="Three")])
    assert len(writes_sent(sent)) == 1 and writes_sent(sent)[0].startswith("WITH")
    assert sorted(AuditStream.objects.filter(tenant=tenant).values_list("name", "head_seq")) \
        == [("s/first", 4), ("s/second", 5)]
    assert Tenant.objects.filter(slug__in=["tenant_batched_2", "tenant_batched_3"]).count() == 2


def test_an_update_after_an_insert_into_its_table_is_a_statement_of_its_own(tenant):
    """Parts of one statement all see the rows as they were before it: an update
    grouped with the insert of its row would find no row."""
    definition_publish(tenant=tenant, name="one", actor="user:priya",
                       steps=[{"id": "a", "type": "external"}])
    run = Run.objects.get(pk=run_create(tenant=tenant, workflow="one", input={},
                                        actor="user:olivia")[0].pk)
    copy = Run(tenant=tenant, definition_id=run.definition_id, input={}, metadata={},
               created_by="user:olivia")
    with CaptureQueriesContext(connection) as sent, atomic_batched():
        rows_insert(Run, [copy])
        copy.status_reason = "updated after its insert"
        row_update(copy, ("status_reason",))
    assert len(writes_sent(sent)) == 2
    assert Run.objects.get(pk=copy.pk).status_reason == "updated after its insert"


def test_a_row_updated_through_two_instances_is_updated_twice_in_order(tenant):
    AuditStream.objects.create(tenant=tenant, name="s/twice")
    one, two = (rows_fetch(AuditStream, "name = %s", ["s/twice"])[0] for _ in "ab")
    with CaptureQueriesContext(connection) as sent, atomic_batched():
        one.head_seq = 1
        row_update(one, ("head_seq",))
        two.head_seq = 2
        row_update(two, ("head_seq",))
    assert len(writes_sent(sent)) == 2
    assert AuditStream.objects.get(name="s/twice").head_seq == 2


def test_a_failing_part_of_a_grouped_statement_fails_the_transaction(tenant, commits):
    AuditStream.objects.create(tenant=tenant, name="s/taken")
    other = AuditStream.objects.create(tenant=tenant, name="s/other")
    with pytest.raises(IntegrityError), atomic_batched():
        other.head_seq = 9
        row_update(other, ("head_seq",))
        rows_insert(AuditStream, [stream(tenant, "s/taken")])  # unique name
    assert names(tenant) == ["s/other", "s/taken"] and commits == []
    assert AuditStream.objects.get(name="s/other").head_seq == 0


def test_every_transaction_of_a_run_commits_with_its_writes(tenant, commits):
    definition_publish(tenant=tenant, name="line", actor="user:priya",
                       steps=[{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}])
    commits.clear()
    run, _ = run_create(tenant=tenant, workflow="line", input={}, actor="user:olivia")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    # created and a started; a done and b started; b done and the run sealed
    assert commits == ["IDLE"] * 3


def test_a_failing_write_commits_nothing_of_the_transaction(tenant, commits):
    AuditStream.objects.create(tenant=tenant, name="s/taken")
    done = []
    with pytest.raises(IntegrityError), atomic_batched():
        rows_insert(AuditStream, [stream(tenant, "s/new")])
        rows_insert(AuditStream, [stream(tenant, "s/taken")])  # unique name
        transaction.on_commit(lambda: done.append("hook"))
    assert names(tenant) == ["s/taken"] and done == [] and commits == []
    assert AuditStream.objects.count() == 1  # the connection is usable again


def test_a_row_count_still_to_be_read_is_checked_before_the_commit(tenant, commits):
    row = AuditStream.objects.create(tenant=tenant, name="s/cas", head_seq=3)
    with pytest.raises(RowChanged), atomic_batched():
        rows_insert(AuditStream, [stream(tenant, "s/new")])
        row.head_seq = 4
        row_update(row, ("head_seq",), expect=("head_seq", 2))  # it holds 3
    assert names(tenant) == ["s/cas"] and commits == []
    assert AuditStream.objects.get(name="s/cas").head_seq == 3


def test_inside_an_enclosing_transaction_nothing_commits_early(tenant, commits):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        with atomic_batched():
            rows_insert(AuditStream, [stream(tenant, "s/inner")])
        assert names(tenant) == ["s/inner"]
        raise ZeroDivisionError
    assert names(tenant) == [] and commits == []


def append(tenant, row: AuditStream | None, actor: str) -> None:
    with atomic_batched(), stream_writer(tenant_id=tenant.id, stream="run/x", row=row):
        audit_append(tenant_id=tenant.id, stream="run/x", code="FC-RUN-002", actor=actor,
                     data={})


def test_a_stale_stream_head_fails_on_the_unique_seq(tenant):
    """The run lock's writer moves a head it read, not locked, with a compare-and-set
    whose row count is not read: a writer that moved the head since inserted the same
    seq, so the unique (stream, seq) fails the transaction."""
    append(tenant, None, "user:olivia")
    read_by_first, read_by_second = (AuditStream.objects.get(name="run/x") for _ in "ab")
    append(tenant, read_by_first, "engine")
    with pytest.raises(IntegrityError, match="uniq_stream_seq"):
        append(tenant, read_by_second, "user:mallory")
    events = list(AuditEvent.objects.filter(stream__name="run/x").values_list("seq", "actor"))
    assert events == [(1, "user:olivia"), (2, "engine")]
    assert AuditStream.objects.get(name="run/x").head_seq == 2
    assert audit_verify(stream="run/x", checkpoints=False).ok
