"""`audit_verify` shows its progress (issue 22 item 7): a tqdm bar on stderr with
`--progress` or on a terminal, never on stdout, and the report and exit code unchanged."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import verify
from audit.checkpoints import checkpoint_seal
from audit.immutability import triggers_suspended
from audit.models import AuditEvent, AuditStream

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Recorder:
    """A `fcore.progress.Progress` that remembers what it heard."""

    def __init__(self):
        self.totals, self.advances = [], []

    def start(self, total: int) -> None:
        self.totals.append(total)

    def advance(self, n: int = 1) -> None:
        self.advances.append(n)


def run(*args, stderr=None) -> tuple[str, str, str | None]:
    """(stdout, stderr, the CommandError's message or None) of one audit_verify."""
    out, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), str(exc)
    return out.getvalue(), err.getvalue(), None


def events() -> int:
    return AuditEvent.objects.count()


def test_progress_appears_on_stderr_with_the_flag_and_changes_nothing_else(completed_run):
    plain_out, plain_err, plain_error = run()
    out, err, error = run("--progress")
    assert plain_err == "" and plain_error is None
    assert (out, error) == (plain_out, None)
    assert "audit_verify" in err and "100%" in err and f"{events()}/{events()}" in err
    assert "event" in err
    json_plain, _, _ = run("--json")
    json_progress, _, _ = run("--json", "--progress")
    assert json_progress == json_plain


def test_a_terminal_gets_a_bar_unless_told_not_to(completed_run):
    _, err, _ = run(stderr=Terminal())
    assert "100%" in err
    _, err, _ = run("--no-progress", stderr=Terminal())
    assert err == ""


def test_a_broken_chain_fails_the_same_with_a_bar(completed_run):
    event = AuditEvent.objects.filter(stream__name=f"run/{completed_run}", seq=3).get()
    with triggers_suspended(connection), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = 'user:mallory' WHERE id = %s",
                       [event.id])
    plain = run()
    with_bar = run("--progress")
    assert plain[2] and "chain failure" in plain[2]
    assert (with_bar[0], with_bar[2]) == (plain[0], plain[2])
    assert "audit_verify" in with_bar[1]


def test_the_service_reports_the_heads_then_every_chunk(completed_run, monkeypatch):
    monkeypatch.setattr(verify, "CHUNK", 4)
    recorder = Recorder()
    report = verify.audit_verify(progress=recorder)
    heads = sum(AuditStream.objects.values_list("head_seq", flat=True))
    assert recorder.totals == [heads] and sum(recorder.advances) == report.events == events()
    assert len(recorder.advances) == -(-events() // 4) and max(recorder.advances) == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_forked_workers_report_their_chunks_too(api, pt004, completed_run, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (run with DATABASE_URL=postgres://…)")
    api.post("/workflows/runs", {"workflow": "pt004_execution_spine", "input": {"amount": 5}})
    checkpoint_seal(tenant=pt004)
    monkeypatch.setattr(verify, "MIN_EVENTS_PER_WORKER", 1)
    monkeypatch.setattr(verify, "CHUNK", 3)
    recorder = Recorder()
    report = verify.audit_verify(workers=2, progress=recorder)
    assert report.ok and sum(recorder.advances) == report.events == events()
    assert len(recorder.advances) >= 2
    out, err, error = run("--workers", "2", "--progress")
    assert error is None and "OK" in out and f"{events()}/{events()}" in err
