"""A worker that records a step's result runs the next internal step of the same run itself
(`runs.engine.dispatch._Chain`) instead of a round trip through the broker; fan-out
still goes to the queue, `FCORE_STEP_CHAIN_MAX` bounds it, and a step it took but could not
run goes back to the queue. These tests commit for real (the chain starts at commit)."""

import threading

import pytest
from celery import current_app
from django.db import connection
from django.test.utils import override_settings

from audit.models import AuditEvent
from audit.verify import audit_verify
from fcore.models import Tenant
from runs.definitions import definition_publish
from runs.engine import dispatch, worker
from runs.engine.sql import STEPS_OF_RUN
from runs.models import Run, RunStatus, StepRun, StepStatus
from runs.services import run_create, run_set_status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tenant():
    return Tenant.objects.create(slug="tenant_chain", name="Chain")


class Broker:
    """Stands in for the queue: keeps what is sent; `drain()` delivers it as a worker
    would, one message at a time from the top (each one a fresh chain)."""

    def __init__(self):
        self.queue, self.sent = [], []

    def send(self, name, args, countdown=None):
        task = current_app.tasks[name]
        self.queue.append((task, args))
        if task.name == "runs.tasks.execute_step":
            self.sent.append((args[1], args[2]))

    def drain(self):
        while self.queue:
            task, args = self.queue.pop(0)
            task.run(*args)


@pytest.fixture
def broker(monkeypatch):
    broker = Broker()
    monkeypatch.setattr(dispatch, "_send", broker.send)
    return broker


def create(tenant, broker, name, steps) -> Run:
    definition_publish(tenant=tenant, name=name, steps=steps, actor="user:priya")
    run, _ = run_create(tenant=tenant, workflow=name, input={}, actor="user:olivia")
    broker.drain()
    return Run.objects.get(pk=run.pk)


def receipts(run) -> list[int]:
    return sorted(StepRun.objects.filter(run=run).values_list("receipt_seq", flat=True))


def test_a_worker_runs_the_next_steps_of_its_run_itself(tenant, broker):
    run = create(tenant, broker, "line", [{"id": f"s{i}", "type": "noop"} for i in range(4)])
    assert run.status == RunStatus.COMPLETED
    assert broker.sent == [("s0", 1)]  # one message for the whole straight line
    assert receipts(run) == [1, 2, 3, 4]  # still one receipt, decision, start, end each
    assert AuditEvent.objects.filter(stream__name=run.stream_name,
                                     code="FC-STEP-002").count() == 4
    assert AuditEvent.objects.filter(stream__name=run.stream_name,
                                     code="FC-POL-001").count() == 4
    assert audit_verify(checkpoints=False).ok


@override_settings(FCORE_STEP_CHAIN_MAX=0)
def test_with_no_chain_every_step_goes_through_the_queue(tenant, broker):
    run = create(tenant, broker, "line", [{"id": f"s{i}", "type": "noop"} for i in range(4)])
    assert run.status == RunStatus.COMPLETED
    assert broker.sent == [("s0", 1), ("s1", 1), ("s2", 1), ("s3", 1)]


@override_settings(FCORE_STEP_CHAIN_MAX=2)
def test_the_chain_is_bounded(tenant, broker):
    run = create(tenant, broker, "line", [{"id": f"s{i}", "type": "noop"} for i in range(6)])
    assert run.status == RunStatus.COMPLETED
    assert broker.sent == [("s0", 1), ("s3", 1)]  # s1 and s2 taken, then back to the queue


def test_fan_out_continues_one_branch_and_queues_the_other(tenant, broker):
    run = create(tenant, broker, "diamond", [
        {"id": "a", "type": "noop"},
        {"id": "b", "type": "noop", "after": ["a"]},
        {"id": "c", "type": "noop", "after": ["a"]},
        {"id": "d", "type": "noop", "after": ["b", "c"]},
    ])
    assert run.status == RunStatus.COMPLETED
    assert broker.sent == [("a", 1), ("c", 1)]  # b continues in the worker; c is queued
    assert receipts(run) == [1, 2, 3, 4]


def test_a_step_taken_but_not_run_goes_back_to_the_queue(tenant, broker, monkeypatch):
    definition_publish(tenant=tenant, name="line", actor="user:priya",
                       steps=[{"id": f"s{i}", "type": "noop"} for i in range(3)])
    run, _ = run_create(tenant=tenant, workflow="line", input={}, actor="user:olivia")
    run_one, calls = worker._step_execute_one, []

    def crash_on_second(*args):
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("worker lost its database")
        run_one(*args)

    monkeypatch.setattr(worker, "_step_execute_one", crash_on_second)
    with pytest.raises(RuntimeError):
        broker.drain()
    assert calls == ["s0", "s1"]
    # s0's result and s1's start are committed; s1 was taken but not run: it is queued.
    assert broker.queue[0][1] == (str(run.run_id), "s1", 1, "noop")
    states = dict(StepRun.objects.filter(run=run).values_list("step_id", "status"))
    assert states == {"s0": StepStatus.SUCCEEDED, "s1": StepStatus.RUNNING,
                      "s2": StepStatus.PENDING}
    monkeypatch.setattr(worker, "_step_execute_one", run_one)
    broker.drain()  # the redelivery finishes the run
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    assert broker.sent == [("s0", 1), ("s1", 1)]


# --- what a chain's locks read (runs.engine.run_memo) ----------------------------------------

@pytest.fixture
def steps_read():
    """How many times this thread's `run_lock`s read a run's steps from the database."""
    reads = []

    def counting(execute, sql, params, many, context):
        if sql == STEPS_OF_RUN:
            reads.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        yield reads


def test_a_chain_reads_its_run_steps_once(tenant, broker, steps_read):
    run = create(tenant, broker, "line", [{"id": f"s{i}", "type": "noop"} for i in range(4)])
    assert run.status == RunStatus.COMPLETED
    # The first lock reads the steps; the next three find the run's audit stream where
    # their own commit left it, and keep the steps they already hold.
    assert len(steps_read) == 1
    assert receipts(run) == [1, 2, 3, 4]
    assert audit_verify(checkpoints=False).ok


def cancel_from_elsewhere(ctx) -> dict:
    """A handler registered by the test below: while its step runs, an operator cancels
    the run through another connection."""

    def cancel():
        try:
            run_set_status(tenant=Tenant.objects.get(slug="tenant_chain"), run_id=ctx.run_id,
                           status="cancelled", actor="user:otto", reason="stop it")
        finally:
            connection.close()

    thread = threading.Thread(target=cancel)
    thread.start()
    thread.join()
    return {}


def test_a_chain_reads_again_what_another_connection_changed(tenant, broker, settings,
                                                             steps_read):
    handler = f"{__name__}.cancel_from_elsewhere"
    settings.FCORE_STEP_HANDLERS = [*settings.FCORE_STEP_HANDLERS, handler]
    run = create(tenant, broker, "cancelled", [{"id": "s0", "type": "noop"},
                                               {"id": "s1", "type": f"python:{handler}"},
                                               {"id": "s2", "type": "noop"}])
    # s1's late result finds the run cancelled and s1 failed by the cancel, because its
    # lock read the steps again: the run's stream had moved since the chain's last commit.
    assert run.status == RunStatus.CANCELLED
    assert len(steps_read) == 2  # s0's result, and s1's (the cancel's is another thread's)
    states = dict(StepRun.objects.filter(run=run).values_list("step_id", "status"))
    assert states == {"s0": StepStatus.SUCCEEDED, "s1": StepStatus.FAILED,
                      "s2": StepStatus.CANCELLED}
    assert StepRun.objects.get(run=run, step_id="s1").error["code"] == "run_ended"
    s1_events = [e.code for e in AuditEvent.objects.filter(stream__name=run.stream_name)
                 if e.data.get("step_id") == "s1"]
    assert s1_events == ["FC-POL-001", "FC-STEP-001", "FC-STEP-003"]  # no late FC-STEP-002
    assert audit_verify(checkpoints=False).ok
