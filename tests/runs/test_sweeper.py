"""The sweeper re-drives what lost tasks and dead workers leave behind: expired leases are
delivered again (same attempt) until FCORE_STEP_MAX_REDELIVERIES, due retries and stalled
runs are advanced; however often a step is delivered, its result is recorded once. After
every test, every audit stream still verifies."""

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from fcore.actors import ENGINE
from fcore.models import Tenant
from gates.models import Gate
from gates.services import Voter, gate_vote
from runs import engine, examples, tasks
from runs.definitions import definition_publish
from runs.engine import INTERNAL_GRACE_S, runs_sweep, sweeper
from runs.models import Run, RunStatus, StepRun, StepStatus
from runs.services import run_create, run_gate_vote, run_set_status, step_report
from tests.concurrency import concurrently

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_streams_verify")]

ECHO = "python:runs.examples.echo"
ADAM = Voter(actor="user:adam", groups=frozenset({"approvers"}))
AMIRA = Voter(actor="user:amira", groups=frozenset({"approvers"}))


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(slug="tenant_sweeper", name="Sweeper")


@pytest.fixture
def held(tenant, django_capture_on_commit_callbacks):
    """Start a run of `steps` whose first internal step is running but was never executed
    (its task was lost); returns the run."""
    def make(steps) -> Run:
        definition_publish(tenant=tenant, name="wf", steps=steps, actor="user:priya")
        with django_capture_on_commit_callbacks(execute=False):
            run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
            engine.run_advance(run.run_id)
        return Run.objects.get(pk=run.pk)
    return make


def step(run, step_id="s") -> StepRun:
    return StepRun.objects.get(run=run, step_id=step_id)


def expire_lease(run, step_id="s") -> None:
    StepRun.objects.filter(run=run, step_id=step_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))


def completions(run, step_id="s") -> list[dict]:
    return [e.data for e in AuditEvent.objects.filter(stream__name=run.stream_name,
                                                      code="FC-STEP-002").order_by("seq")
            if e.data["step_id"] == step_id]


def test_a_running_step_whose_lease_holds_is_left_alone(held, django_capture_on_commit_callbacks):
    run = held([{"id": "s", "type": ECHO}])
    lease = step(run).lease_expires_at
    assert lease > timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert runs_sweep().as_dict() == {"timed_out": 0, "redelivered": 0, "lease_lost": 0,
                                          "advanced": 0, "parents_woken": 0}
    assert sent == [] and step(run).lease_expires_at == lease


def test_an_expired_lease_is_delivered_again_with_the_same_attempt(
        held, advance, django_capture_on_commit_callbacks):
    run = held([{"id": "s", "type": ECHO}])
    expire_lease(run)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        sweep = runs_sweep()
    assert (sweep.redelivered, sweep.lease_lost) == (1, 0)
    assert len(sent) == 1  # the execute_step task, sent on commit
    s = step(run)
    assert (s.status, s.attempt, s.redeliveries) == (StepStatus.RUNNING, 1, 1)
    assert s.lease_expires_at > timezone.now()
    with advance():
        sent[0]()  # the task is delivered
    s = step(run)
    assert s.status == StepStatus.SUCCEEDED
    assert s.output["idempotency_key"] == f"{run.run_id}:s:1"
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED


def test_after_max_redeliveries_the_attempt_fails_with_lease_lost(
        held, advance, settings, django_capture_on_commit_callbacks):
    settings.FCORE_STEP_MAX_REDELIVERIES = 2
    run = held([{"id": "s", "type": ECHO}, {"id": "t", "type": "noop"}])
    for expected in (1, 2):
        expire_lease(run)
        with django_capture_on_commit_callbacks(execute=False):
            assert runs_sweep().redelivered == 1
        assert step(run).redeliveries == expected
    expire_lease(run)
    with advance():
        sweep = runs_sweep()
    assert (sweep.redelivered, sweep.lease_lost) == (0, 1)
    s, run = step(run), Run.objects.get(pk=run.pk)
    assert (s.status, s.attempt, s.error["code"]) == (StepStatus.FAILED, 1, "lease_lost")
    assert run.status == RunStatus.FAILED
    assert step(run, "t").status == StepStatus.CANCELLED


def test_a_lost_lease_with_retry_left_gets_a_new_attempt(
        held, advance, settings, django_capture_on_commit_callbacks):
    settings.FCORE_STEP_MAX_REDELIVERIES = 0
    run = held([{"id": "s", "type": ECHO, "retry": {"max_attempts": 2, "backoff": 0}}])
    expire_lease(run)
    with advance():
        assert runs_sweep().lease_lost == 1
    s = step(run)
    assert (s.status, s.attempt, s.redeliveries) == (StepStatus.SUCCEEDED, 2, 0)
    assert s.output["idempotency_key"] == f"{run.run_id}:s:2"


def test_results_are_recorded_once_whatever_the_number_of_deliveries(
        held, advance, django_capture_on_commit_callbacks):
    run = held([{"id": "s", "type": ECHO}, {"id": "t", "type": "external"}])
    expire_lease(run)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        runs_sweep()
    with advance():
        engine.step_execute(run.run_id, "s", 1)  # the first worker was slow, not dead
        sent[0]()                                # the redelivery
        engine.step_execute(run.run_id, "s", 1)  # and a duplicate from the broker
    assert len(completions(run)) == 1
    assert step(run).receipt_seq == 1 and step(run, "t").status == StepStatus.RUNNING
    for attempt in (1, 2):
        assert engine.step_record_result(run.run_id, "s", attempt, succeeded=False,
                                         output=None, actor=ENGINE) is False
    assert step(run).status == StepStatus.SUCCEEDED and len(completions(run)) == 1


def test_a_result_for_a_superseded_attempt_is_refused(
        held, settings, django_capture_on_commit_callbacks):
    """Compare-and-set on the attempt: once attempt 2 runs, attempt 1's worker (slow, not
    dead) can record nothing, whichever way its result arrives."""
    settings.FCORE_STEP_MAX_REDELIVERIES = 0
    run = held([{"id": "s", "type": ECHO, "retry": {"max_attempts": 2, "backoff": 0}}])
    expire_lease(run)
    with django_capture_on_commit_callbacks(execute=False):  # attempt 2's task not run
        assert runs_sweep().lease_lost == 1
        engine.run_advance(run.run_id)
    assert (step(run).status, step(run).attempt) == (StepStatus.RUNNING, 2)
    before = AuditEvent.objects.filter(stream__name=run.stream_name).count()
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.step_record_result(run.run_id, "s", 1, succeeded=True,
                                         output={"late": 1}, actor=ENGINE) is False
        engine.step_execute(run.run_id, "s", 1)  # the first attempt's task, late
    assert AuditEvent.objects.filter(stream__name=run.stream_name).count() == before
    s = step(run)
    assert (s.status, s.attempt, s.output) == (StepStatus.RUNNING, 2, None)
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.step_record_result(run.run_id, "s", 2, succeeded=True,
                                         output={"n": 2}, actor=ENGINE) is True
    s = step(run)
    assert (s.status, s.attempt, s.output) == (StepStatus.SUCCEEDED, 2, {"n": 2})
    assert [d["attempt"] for d in completions(run)] == [2]
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED


def test_a_due_retry_is_advanced_by_the_sweeper(tenant, advance):
    definition_publish(tenant=tenant, name="wf", actor="user:priya", steps=[
        {"id": "s", "type": "python:runs.examples.flaky",
         "retry": {"max_attempts": 2, "backoff": 60}}])
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    assert (step(run).status, step(run).attempt) == (StepStatus.PENDING, 2)
    with advance():
        assert runs_sweep().advanced == 0  # not due yet
    StepRun.objects.filter(run=run).update(not_before=timezone.now() - timedelta(seconds=5))
    with advance():
        assert runs_sweep().advanced == 1
    s = step(run)
    assert (s.status, s.attempt, s.output) == (StepStatus.SUCCEEDED, 2, {"attempt": 2})
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED


def stall(run) -> None:
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(minutes=5))


def test_a_stalled_run_is_advanced_and_a_busy_one_is_not(pt004, advance,
                                                         django_capture_on_commit_callbacks):
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine", input={"amount": 1},
                            actor="user:olivia")
        busy, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                             input={"amount": 2}, actor="user:olivia")
        run_set_status(tenant=pt004, run_id=run.run_id, status="paused", actor="user:olivia")
        step_report(tenant=pt004, run_id=run.run_id, step_id="step_1", actor="client:exec",
                    status="succeeded", output={})  # a paused run starts nothing more
    with django_capture_on_commit_callbacks(execute=False):  # the advance task is lost
        run_set_status(tenant=pt004, run_id=run.run_id, status="running", actor="user:olivia")
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert step(run, "step_2").status == StepStatus.PENDING  # nothing in flight
    stall(run)
    stall(busy)  # its step_1 runs at an external executor: not stalled
    with advance():
        assert runs_sweep(stalled_after_s=600).advanced == 0
        assert runs_sweep().advanced == 1
    assert step(run, "step_2").status == StepStatus.RUNNING
    assert step(busy, "step_2").status == StepStatus.PENDING


def test_a_run_whose_advance_after_an_approval_was_lost_is_advanced(
        pt004, advance, django_capture_on_commit_callbacks):
    """A RUNNING run whose approval step is still `waiting` on an approved gate has nothing
    in flight: only the lost advance would release the step, so the sweeper must. (A vote
    now releases the step in its own transaction; a run left so by a version that sent
    the release as a task after the vote is made here as that version made it.)"""
    with advance():
        run, _ = run_create(tenant=pt004, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 10, "vendor": "v"})
    gate = run.gates.get()
    with advance():
        run_gate_vote(tenant=pt004, run_id=run.run_id, gate_id=gate.id, voter=ADAM,
                      decision="approve")
    with django_capture_on_commit_callbacks(execute=False):  # the advance task is lost
        with engine.run_lock(run.run_id) as locked:
            locked_gate = Gate.objects.select_for_update().get(pk=gate.pk)
            gate_vote(gate=locked_gate, run=locked, voter=AMIRA, decision="approve")
            engine.run_transition(locked, "resume", actor=AMIRA.actor, reason="approved")
            engine.enqueue_advance(locked.run_id)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert step(run, "sign_off").status == StepStatus.WAITING
    stall(run)
    with advance():
        assert runs_sweep().advanced == 1
    assert step(run, "sign_off").status == StepStatus.SUCCEEDED
    assert step(run, "pay").status == StepStatus.RUNNING


def test_an_internal_step_past_its_deadline_gets_a_grace_before_the_sweeper_fails_it(
        held, advance):
    run = held([{"id": "s", "type": ECHO, "timeout_s": 10}])
    deadline = step(run).deadline_at
    with advance():
        assert runs_sweep(now=deadline + timedelta(seconds=INTERNAL_GRACE_S / 2)
                          ).timed_out == 0
        assert step(run).status == StepStatus.RUNNING
        assert runs_sweep(now=deadline + timedelta(seconds=INTERNAL_GRACE_S + 1)
                          ).timed_out == 1
    s = step(run)
    assert (s.status, s.error["code"]) == (StepStatus.FAILED, "timeout")
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILED


# --- real concurrency (PostgreSQL: each thread its own connection, row locks decide) -------

@pytest.fixture
def unsent(tenant, monkeypatch):
    """A committed run of one `echo` step, started, whose execute_step tasks are only
    collected (returned list), never run."""
    if connection.vendor != "postgresql":
        pytest.fail("concurrency tests need PostgreSQL (run them with DATABASE_URL=postgres://…)")
    sent = []
    monkeypatch.setattr(tasks.execute_step, "delay", lambda *args: sent.append(args))
    definition_publish(tenant=tenant, name="wf", steps=[{"id": "s", "type": ECHO}],
                       actor="user:priya")
    run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    assert sent == [(str(run.run_id), "s", 1, ECHO)]
    sent.clear()
    return run, sent


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_step_record_its_result_once(unsent, monkeypatch):
    run, _ = unsent
    # Every delivery is inside the handler (it found the step running) before any records.
    barrier, echo, calls = threading.Barrier(4), examples.echo, []

    def echo_together(ctx):
        barrier.wait(timeout=10)
        calls.append(ctx.idempotency_key)
        return echo(ctx)

    monkeypatch.setattr(examples, "echo", echo_together)
    concurrently(4, lambda i: engine.step_execute(run.run_id, "s", 1))
    assert calls == [f"{run.run_id}:s:1"] * 4  # delivered four times, same key ...
    assert len(completions(run)) == 1           # ... recorded once
    s = step(run)
    assert (s.status, s.attempt, s.receipt_seq) == (StepStatus.SUCCEEDED, 1, 1)
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    assert AuditEvent.objects.filter(stream__name=run.stream_name,
                                     code="FC-RUN-003").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_deliver_an_expired_lease_once(unsent, monkeypatch):
    run, sent = unsent
    expire_lease(run)
    # The worst interleaving, every time: each sweeper has read the expired lease before
    # any of them opens its claiming transaction (the sweeper's transactions wait for all).
    barrier = threading.Barrier(3)

    def atomic(*args, **kwargs):
        barrier.wait(timeout=10)
        return transaction.atomic(*args, **kwargs)

    monkeypatch.setattr(sweeper, "transaction", SimpleNamespace(atomic=atomic))
    sweeps = concurrently(3, lambda i: runs_sweep())
    assert sorted(sweep.redelivered for sweep in sweeps) == [0, 0, 1]
    assert sent == [(str(run.run_id), "s", 1, ECHO)]
    s = step(run)
    assert (s.status, s.attempt, s.redeliveries) == (StepStatus.RUNNING, 1, 1)
    assert s.lease_expires_at > timezone.now()
