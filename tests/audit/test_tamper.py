"""A database superuser rewrites history with the immutability triggers switched off; the
signed checkpoints expose it even when the chain was recomputed to look whole.

Each case is first shown to pass the chain-only walk (`--no-checkpoints`) — the rewrite is
internally consistent — and then to fail `audit_verify`, naming the stream and seq. The
cases run on the default database (SQLite or PostgreSQL, inside the test transaction) and,
marked `postgres`, with real commits on PostgreSQL.
"""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.checkpoints import checkpoint_seal
from audit.hashing import GENESIS_HASH, event_hash
from audit.immutability import triggers_suspended
from audit.models import AuditEvent, AuditStream


def _events(stream: str) -> list[dict]:
    return list(AuditEvent.objects.filter(stream__name=stream).order_by("seq").values(
        "id", "seq", "code", "actor", "at", "data", "prev_hash", "hash"))


def _rechain(cursor, stream: str) -> None:
    """Renumber and re-hash the whole stream from its rows; move the head to match."""
    prev = GENESIS_HASH
    for seq, event in enumerate(_events(stream), start=1):
        digest = event_hash(prev_hash=prev, stream=stream, seq=seq, code=event["code"],
                            actor=event["actor"], at=event["at"], data=event["data"])
        cursor.execute("UPDATE audit_auditevent SET seq = %s, prev_hash = %s, hash = %s "
                       "WHERE id = %s", [seq, prev, digest, event["id"]])
        prev = digest
    cursor.execute("UPDATE audit_auditstream SET head_seq = %s, head_hash = %s WHERE name = %s",
                   [len(_events(stream)), prev, stream])


def rewrite(cursor, stream):
    event = _events(stream)[2]
    cursor.execute("UPDATE audit_auditevent SET actor = %s WHERE id = %s",
                   ["client:mallory", event["id"]])
    _rechain(cursor, stream)


def delete_one(cursor, stream):
    cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [_events(stream)[3]["id"]])
    _rechain(cursor, stream)


def truncate(cursor, stream):
    keep = _events(stream)[9]
    cursor.execute("DELETE FROM audit_auditevent WHERE stream_id = "
                   "(SELECT id FROM audit_auditstream WHERE name = %s) AND seq > 10", [stream])
    cursor.execute("UPDATE audit_auditstream SET head_seq = 10, head_hash = %s WHERE name = %s",
                   [keep["hash"], stream])


def delete_run(cursor, stream):
    cursor.execute("DELETE FROM audit_auditevent WHERE stream_id = "
                   "(SELECT id FROM audit_auditstream WHERE name = %s)", [stream])
    cursor.execute("DELETE FROM audit_auditstream WHERE name = %s", [stream])


CASES = {
    "rewritten event, chain recomputed": (rewrite, "differs from the head signed in"),
    "deleted event, chain recomputed": (delete_one, "missing: checkpoint tenant_omega#1 holds"),
    "truncated stream": (truncate, "missing: checkpoint tenant_omega#1 holds this event"),
    "deleted run": (delete_run, "holds this stream's head, but the stream is gone"),
}


def tamper_and_verify(api, pt004, run_id, case):
    stream = f"run/{run_id}"
    checkpoint = checkpoint_seal(tenant=pt004)
    head = next(h for h in checkpoint.heads if h["stream"] == stream)
    call_command("audit_verify")  # clean before
    change, expected = CASES[case]
    with triggers_suspended(connection), connection.cursor() as cursor:
        change(cursor, stream)
    # the rewrite looks whole to the chain walk alone (the rows the run's events record
    # would give a truncation away: tests/audit/test_bound_facts.py)
    call_command("audit_verify", "--no-checkpoints", "--no-facts")
    with pytest.raises(CommandError, match="chain failure"):
        call_command("audit_verify")
    report = api.get("/workflows/audit/verify").json()
    assert report["ok"] is False
    failure = report["failures"][0]
    assert failure["stream"] == stream and failure["seq"] == head["seq"]
    assert expected in failure["problem"], report["failures"]
    if case != "deleted run":
        assert AuditStream.objects.filter(name=stream).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_tamper_is_caught(api, pt004, completed_run, case):
    tamper_and_verify(api, pt004, completed_run, case)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", list(CASES))
def test_tamper_is_caught_with_real_commits_on_postgres(api, pt004, completed_run, case):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (run with DATABASE_URL=postgres://…)")
    tamper_and_verify(api, pt004, completed_run, case)


@pytest.mark.django_db
def test_a_forged_checkpoint_is_caught(api, pt004, completed_run):
    checkpoint = checkpoint_seal(tenant=pt004)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_checkpoint SET heads = %s WHERE id = %s",
                       ['[{"stream": "run/x", "seq": 1, "hash": "%s"}]' % ("0" * 64),
                        checkpoint.id])
    failures = api.get("/workflows/audit/verify").json()["failures"]
    assert failures[0] == {"checkpoint": "checkpoint tenant_omega#1",
                           "problem": "heads are not a sorted, unique list of tree_size streams"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_scan_finds_what_the_sequential_one_finds(api, pt004, completed_run,
                                                           monkeypatch):
    from audit import verify  # noqa: PLC0415

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (run with DATABASE_URL=postgres://…)")
    api.post("/workflows/runs", {"workflow": "pt004_execution_spine", "input": {"amount": 5}})
    checkpoint_seal(tenant=pt004)
    monkeypatch.setattr(verify, "MIN_EVENTS_PER_WORKER", 1)
    # streams 1 and 2 (10 events) for one worker, stream 3 (5 events) for the other
    assert verify._ranges({1: (1, "a", 5), 2: (2, "b", 5), 3: (3, "c", 5)}, 2) == [
        (None, 3), (3, None)]
    sequential, parallel = verify.audit_verify(), verify.audit_verify(workers=2)
    assert parallel.ok and (parallel.events, parallel.streams) == (sequential.events,
                                                                   sequential.streams)
    with triggers_suspended(connection), connection.cursor() as cursor:
        truncate(cursor, f"run/{completed_run}")
    sequential, parallel = verify.audit_verify(), verify.audit_verify(workers=2)
    assert not parallel.ok and parallel.failures == sequential.failures
