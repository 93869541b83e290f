"""Cancelling a run with parallel branches in flight (services, API, a worker's heartbeat),
and fan-out/fan-in: both branches start together, the join waits for both, a deny or a
final failure in one branch fails the run and cancels what has not started in the other.
After every test, every audit stream still verifies."""

import threading
import time

import pytest
from django.db import connection

from audit.models import AuditEvent
from fcore.actors import ENGINE
from fcore.models import Tenant
from gates.models import PolicyDecision
from gates.policies import policy_save
from runs import engine, examples, tasks
from runs.definitions import definition_publish
from runs.engine import lease_renew
from runs.handlers import StepFailed
from runs.models import Run, RunStatus, StepRun
from runs.services import run_create, run_set_status, step_report
from runs.verification import run_receipts_verify

pytestmark = pytest.mark.usefixtures("audit_streams_verify")

WAIT = "python:runs.examples.wait"
BRANCHES = [{"id": "ext", "type": "external", "after": []},
            {"id": "work", "type": WAIT, "after": [], "input": {"wait_s": 10}},
            {"id": "join", "type": "noop", "after": ["ext", "work"]},
            {"id": "last", "type": "noop"}]
FAN = [{"id": "a", "type": "external", "after": []},
       {"id": "b", "type": "external", "after": []},
       {"id": "join", "type": "noop", "after": ["a", "b"]}]


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(slug="tenant_branches", name="Branches")


def statuses(run) -> dict[str, str]:
    return dict(StepRun.objects.filter(run=run).order_by("index").values_list("step_id",
                                                                            "status"))


def events(run, code) -> list[dict]:
    return [e.data for e in AuditEvent.objects.filter(stream__name=run.stream_name, code=code)
            .order_by("seq")]


def held(tenant, steps, capture) -> Run:
    """A run of `steps` advanced once, its internal steps' tasks not delivered."""
    definition_publish(tenant=tenant, name="wf", steps=steps, actor="user:priya")
    with capture(execute=False):
        run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
        engine.run_advance(run.run_id)
    return Run.objects.get(pk=run.pk)


# --- cancellation ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_cancel_ends_running_branches_cancels_pending_steps_and_seals(
        tenant, advance, django_capture_on_commit_callbacks):
    run = held(tenant, BRANCHES, django_capture_on_commit_callbacks)
    assert statuses(run) == {"ext": "running", "work": "running", "join": "pending",
                             "last": "pending"}
    work = StepRun.objects.get(run=run, step_id="work")
    assert lease_renew(work) is True  # a worker keeps its lease while the step runs
    with advance():
        run_set_status(tenant=tenant, run_id=run.run_id, status="cancelled",
                       actor="user:otto", reason="not needed")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.status_reason == "not needed"
    assert statuses(run) == {"ext": "failed", "work": "failed", "join": "cancelled",
                             "last": "cancelled"}
    ended = {d["step_id"]: d["error"] for d in events(run, "FC-STEP-003")}
    assert ended == {"ext": {"code": "run_ended", "detail": "not needed"},
                     "work": {"code": "run_ended", "detail": "not needed"}}
    assert {d["step_id"]: d["status"] for d in events(run, "FC-STEP-005")} == {
        "join": "cancelled", "last": "cancelled"}
    seal = events(run, "FC-RUN-003")
    assert len(seal) == 1 and seal[0]["status"] == "cancelled"
    assert seal[0]["workflow_hash"] == run.workflow_hash
    assert run_receipts_verify(run)["verified"] is True
    # the worker's heartbeat now fails, so its handler is asked to stop ...
    assert lease_renew(work) is False
    # ... and its late result, however it arrives, is refused
    before = AuditEvent.objects.filter(stream__name=run.stream_name).count()
    with advance():
        assert engine.step_record_result(run.run_id, "work", 1, succeeded=True,
                                         output={"late": True}, actor=ENGINE) is False
        engine.step_execute(run.run_id, "work", 1)
        engine.run_advance(run.run_id)
    assert AuditEvent.objects.filter(stream__name=run.stream_name).count() == before
    assert StepRun.objects.get(pk=work.pk).output is None


@pytest.mark.django_db
def test_cancel_through_the_api(api, pt004):
    definition_publish(tenant=pt004, name="fan", steps=FAN, actor="user:priya")
    run_id = api.post("/workflows/runs", {"workflow": "fan", "input": {}}).json()["run_id"]
    response = api.patch(f"/workflows/runs/{run_id}/status",
                         {"status": "cancelled", "reason": "ops stop"})
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "cancelled"
    steps = {s["step_id"]: (s["status"], (s["error"] or {}).get("code")) for s in body["steps"]}
    assert steps == {"a": ("failed", "run_ended"), "b": ("failed", "run_ended"),
                     "join": ("cancelled", "cancelled")}
    again = api.patch(f"/workflows/runs/{run_id}/status", {"status": "cancelled"})
    assert again.status_code == 409
    assert (again.json()["current"], again.json()["allowed"]) == ("cancelled", [])
    late = api.patch(f"/workflows/runs/{run_id}/steps/a", {"status": "succeeded"})
    assert late.status_code == 409 and late.json()["current"] == "failed"


@pytest.mark.django_db(transaction=True)  # the worker thread has its own connection
def test_a_working_handler_is_stopped_when_its_run_is_cancelled(tenant, settings,
                                                               monkeypatch):
    settings.FCORE_STEP_LEASE_S = 0.15  # heartbeat every 0.05 s
    monkeypatch.setattr(tasks.execute_step, "delay", lambda *args: None)  # no eager run
    started, outcome, wait = threading.Event(), [], examples.wait

    def watched_wait(ctx):  # runs.examples.wait, telling the test when it starts and ends
        started.set()
        try:
            outcome.append(wait(ctx))
        except StepFailed as exc:
            outcome.append(exc.code)
            raise

    monkeypatch.setattr(examples, "wait", watched_wait)
    definition_publish(tenant=tenant, name="wf", steps=BRANCHES, actor="user:priya")
    run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    engine.run_advance(run.run_id)
    assert statuses(run)["work"] == "running"

    def worker():
        try:
            engine.step_execute(run.run_id, "work", 1)  # waits 10 s unless stopped
        finally:
            connection.close()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert started.wait(5)  # the handler is running under its heartbeat
    began = time.monotonic()
    run_set_status(tenant=tenant, run_id=run.run_id, status="cancelled", actor="user:otto")
    thread.join(timeout=8)
    assert not thread.is_alive()
    assert outcome == ["stopped"]  # its stop event was set ...
    assert time.monotonic() - began < 2  # ... by a heartbeat, not after its 10 s
    work = StepRun.objects.get(run=run, step_id="work")
    assert work.error == {"code": "run_ended", "detail": "operator set cancelled"}
    assert [d["step_id"] for d in events(run, "FC-STEP-003")].count("work") == 1


# --- fan-out / fan-in -----------------------------------------------------------------------

@pytest.mark.django_db
def test_both_branches_start_in_one_advance_and_the_join_waits_for_both(
        tenant, advance, django_capture_on_commit_callbacks):
    run = held(tenant, FAN, django_capture_on_commit_callbacks)
    assert statuses(run) == {"a": "running", "b": "running", "join": "pending"}
    assert [d["step_id"] for d in events(run, "FC-STEP-001")] == ["a", "b"]
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id="b", actor="client:x",
                    status="succeeded", output={"b": 2})
        engine.run_advance(run.run_id)
    assert statuses(run) == {"a": "running", "b": "succeeded", "join": "pending"}
    assert not PolicyDecision.objects.filter(step_run__run=run, step_run__step_id="join")
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id="a", actor="client:x",
                    status="succeeded", output={"a": 1})
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert statuses(run) == {"a": "succeeded", "b": "succeeded", "join": "succeeded"}
    assert run.output == {"join": {}}
    assert [d["step_id"] for d in events(run, "FC-STEP-001")] == ["a", "b", "join"]


@pytest.mark.django_db
def test_a_deny_in_one_branch_fails_the_run_and_cancels_the_other_branch(tenant, advance):
    policy_save(tenant=tenant, name="no_b2", actor="user:priya", tier=3,
                applies_to={"workflows": ["wf"], "step_types": ["*"]},
                rules=[{"id": "block-b2", "effect": "deny", "when": 'step.id == "b2"',
                        "reason": "b2 is forbidden"}])
    definition_publish(tenant=tenant, name="wf", actor="user:priya", steps=[
        {"id": "a1", "type": "external", "after": []},
        {"id": "a2", "type": "noop", "after": ["a1"]},
        {"id": "b1", "type": "noop", "after": []},
        {"id": "b2", "type": "noop", "after": ["b1"]},
        {"id": "join", "type": "noop", "after": ["a2", "b2"]}])
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.status_reason == "policy deny at b2: b2 is forbidden"
    assert statuses(run) == {"a1": "failed", "a2": "cancelled", "b1": "succeeded",
                             "b2": "cancelled", "join": "cancelled"}
    assert StepRun.objects.get(run=run, step_id="a1").error["code"] == "run_ended"
    denied = PolicyDecision.objects.get(step_run__run=run, step_run__step_id="b2")
    assert denied.decision == "deny" and denied.rules_triggered[0]["rule"] == "block-b2"
    closed = {d["step_id"]: d["reason"] for d in events(run, "FC-STEP-005")}
    assert closed["b2"] == "denied by policy: b2 is forbidden"
    assert set(closed) == {"a2", "b2", "join"}
    assert not StepRun.objects.filter(run=run, step_id__in=["a2", "join"],
                                      started_at__isnull=False).exists()
    assert events(run, "FC-RUN-003")[0]["status"] == "failed"


@pytest.mark.django_db
def test_a_final_failure_in_one_branch_fails_the_run_and_cancels_the_other_branch(
        tenant, advance):
    definition_publish(tenant=tenant, name="wf", actor="user:priya", steps=[
        {"id": "a1", "type": "external", "after": []},
        {"id": "a2", "type": "noop", "after": ["a1"]},
        {"id": "b1", "type": "external", "after": [], "retry": {"max_attempts": 2,
                                                                "backoff": 0}},
        {"id": "b2", "type": "noop", "after": ["b1"]},
        {"id": "join", "type": "noop", "after": ["a2", "b2"]}])
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    for attempt in (1, 2):
        with advance():
            step_report(tenant=tenant, run_id=run.run_id, step_id="b1", actor="client:x",
                        status="failed", error={"code": "boom"}, attempt=attempt)
        if attempt == 1:  # retried: the run goes on
            assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
            assert statuses(run)["b1"] == "running"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.status_reason == "step b1 failed"
    assert statuses(run) == {"a1": "failed", "a2": "cancelled", "b1": "failed",
                             "b2": "cancelled", "join": "cancelled"}
    assert StepRun.objects.get(run=run, step_id="a1").error["code"] == "run_ended"
    b1 = StepRun.objects.get(run=run, step_id="b1")
    assert (b1.attempt, b1.error) == (2, {"code": "boom"})
    assert [(d["step_id"], d["attempt"]) for d in events(run, "FC-STEP-004")] == [("b1", 2)]
    assert {d["step_id"] for d in events(run, "FC-STEP-005")} == {"a2", "b2", "join"}
    assert not StepRun.objects.filter(run=run, step_id__in=["a2", "b2", "join"],
                                      started_at__isnull=False).exists()
    seal = events(run, "FC-RUN-003")
    assert len(seal) == 1 and seal[0]["status"] == "failed"
    assert run_receipts_verify(run)["verified"] is True
