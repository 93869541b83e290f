"""The audit chain: recomputed independently, tamper caught, the database refuses changes."""

import hashlib

import pytest
import rfc8785
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.immutability import triggers_suspended
from audit.models import AuditEvent, ImmutableEventError

pytestmark = pytest.mark.django_db


def independent_hash(event: dict) -> str:
    """DESIGN §7, written from the text alone: no project code."""
    body = {k: event[k] for k in ("stream", "seq", "code", "actor", "at", "data")}
    return hashlib.sha256(event["prev_hash"].encode("ascii") + rfc8785.dumps(body)).hexdigest()


@pytest.fixture
def flagged_run(api, approver):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000, "note": "naïve ☃ 𝄞",
                                                    "ratio": 1.5}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}", {"decision": "approve"})
    for i in range(2, 6):
        api.patch(f"/workflows/runs/{run_id}/steps/step_{i}",
                  {"status": "succeeded",
                   "output": {"n": i, "big": 2**53 - 1, "f": 0.1, "g": 1e21}})
    return run_id


def test_chain_recomputed_from_api_logs_alone(api, flagged_run):
    logs = api.get(f"/workflows/runs/{flagged_run}?include_logs=true").json()["logs"]
    assert len(logs) > 20
    prev = "0" * 64
    for expected_seq, event in enumerate(logs, start=1):
        assert event["seq"] == expected_seq
        assert event["prev_hash"] == prev
        assert independent_hash(event) == event["hash"]
        prev = event["hash"]


def test_api_verify_reports_ok(api, flagged_run):
    report = api.get("/workflows/audit/verify").json()
    assert report["ok"] is True and report["failures"] == []
    assert report["streams"] >= 2 and report["events"] > 20


def test_database_refuses_update_delete(flagged_run):
    event_id = AuditEvent.objects.filter(stream__name=f"run/{flagged_run}").first().id
    for sql in ("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s",
                "DELETE FROM audit_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [event_id])
    assert AuditEvent.objects.get(id=event_id).actor != "mallory"


def test_database_refuses_emptying_the_table(flagged_run):
    # TRUNCATE on PostgreSQL; SQLite has none, its equivalent is DELETE without WHERE
    sql = ("TRUNCATE audit_auditevent CASCADE" if connection.vendor == "postgresql"
           else "DELETE FROM audit_auditevent")
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":  # check the test's deferred FKs first
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(sql)
    assert AuditEvent.objects.count() > 0


def test_model_refuses_update_and_delete(flagged_run):
    event = AuditEvent.objects.filter(stream__name=f"run/{flagged_run}").first()
    event.actor = "mallory"
    with pytest.raises(ImmutableEventError):
        event.save()
    with pytest.raises(ImmutableEventError):
        event.delete()
    with pytest.raises(ImmutableEventError):
        AuditEvent.objects.filter(id=event.id).update(actor="mallory")
    with pytest.raises(ImmutableEventError):
        AuditEvent.objects.filter(id=event.id).delete()


@pytest.mark.parametrize("column,value", [("actor", "'user:mallory'"),
                                          ("data", "'{\"from\": \"x\"}'"),
                                          ("at", "'2020-01-01T00:00:00.000000Z'")])
def test_tampered_row_is_caught_by_audit_verify(api, flagged_run, column, value):
    call_command("audit_verify")  # clean before
    event = AuditEvent.objects.filter(stream__name=f"run/{flagged_run}", seq=3).get()
    with triggers_suspended(connection), connection.cursor() as cursor:
        cursor.execute(f"UPDATE audit_auditevent SET {column} = {value} WHERE id = %s",
                       [event.id])
    with pytest.raises(CommandError, match="chain failure"):
        call_command("audit_verify")
    report = api.get("/workflows/audit/verify").json()
    assert report["ok"] is False
    assert report["failures"][0] == {"stream": f"run/{flagged_run}", "seq": 3,
                                     "problem": "hash does not match content"}


def test_deleted_event_breaks_the_links(api, flagged_run):
    event = AuditEvent.objects.filter(stream__name=f"run/{flagged_run}", seq=4).get()
    with triggers_suspended(connection), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.id])
    problems = {f["problem"] for f in api.get("/workflows/audit/verify").json()["failures"]}
    assert "expected seq 4" in problems and "prev_hash does not link" in problems


def test_messages_read_like_the_seeds(api, flagged_run):
    logs = api.get(f"/workflows/runs/{flagged_run}?include_logs=true").json()["logs"]
    messages = [e["message"] for e in logs]
    assert messages[0] == "Workflow run created for 'pt004_execution_spine'"
    assert "Run status changed from running to paused" in messages[5:][0:20] or any(
        m.startswith("Run status changed from running to paused") for m in messages)
