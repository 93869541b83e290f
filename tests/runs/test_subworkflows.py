"""Sub-workflows in the engine (DESIGN §11 `type: workflow`): a step starts a child run of
the same tenant with its resolved input; it succeeds with the child's run id, seal and
output, fails when the child fails or is cancelled; ending the parent cancels its
children; a depth limit; a lost wake-up is re-driven by the sweeper. Eager Celery on the
test database; after every test, every audit stream still verifies."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from fcore.errors import NotFound
from fcore.models import Tenant
from gates.models import Gate
from gates.policies import policy_save
from gates.services import Voter
from runs.definitions import definition_publish
from runs.engine import runs_sweep, step_execute
from runs.models import Run, RunStatus, StepRun
from runs.services import run_create, run_gate_vote, run_set_status, step_report

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_streams_verify")]

ECHO = "python:runs.examples.echo"


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(slug="tenant_sub", name="Sub")


def publish(tenant, name, steps, output=None):
    definition_publish(tenant=tenant, name=name, steps=steps, actor="user:priya",
                       output=output)


def start(tenant, advance, workflow, input=None) -> Run:
    with advance():
        run, _ = run_create(tenant=tenant, workflow=workflow, input=input or {},
                            actor="user:olivia")
    return Run.objects.get(pk=run.pk)


def step(run, step_id) -> StepRun:
    return StepRun.objects.get(run=run, step_id=step_id)


def children(run) -> list[Run]:
    return list(Run.objects.filter(parent_run=run).order_by("created_at"))


def events(run, code) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(stream__name=run.stream_name, code=code)
                .order_by("seq"))


def report(tenant, advance, run, step_id, status="succeeded", output=None):
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id=step_id, actor="user:exec",
                    status=status, output=output if status == "succeeded" else None,
                    error=None if status == "succeeded" else {"detail": "no"})


def archive_parent(tenant, child_steps=None, **extra):
    publish(tenant, "archive_flow", child_steps or [
        {"id": "store", "type": "external"},
        {"id": "done", "type": ECHO, "input": {"stored": "=steps.store.output.where"}}],
        output={"where": "=steps.done.output.input.stored"})
    publish(tenant, "parent", [
        {"id": "pay", "type": ECHO, "input": {"amount": 5}},
        {"id": "archive", "type": "workflow", "workflow": "archive_flow", **extra,
         "input": {"payment": "=steps.pay.output"}},
        {"id": "after", "type": ECHO, "input": {"child": "=steps.archive.output"}}])


def test_a_workflow_step_runs_a_child_and_succeeds_with_its_seal_and_output(tenant, advance):
    archive_parent(tenant)
    run = start(tenant, advance, "parent", {"ref": "R"})
    (child,) = children(run)
    assert child.parent_step_id == "archive" and child.tenant_id == tenant.id
    assert child.status == RunStatus.RUNNING and child.created_by == "user:olivia"
    assert child.input == {"ref": "R", "payment": step(run, "pay").output}
    assert step(run, "archive").status == "running"
    started = events(run, "FC-STEP-001")[-1].data
    assert started["child_run_id"] == str(child.run_id)
    assert (started["child_workflow"], started["child_version"]) == ("archive_flow", 1)
    created = events(child, "FC-RUN-001")[0].data
    assert created["parent"] == {"run_id": str(run.run_id), "step_id": "archive",
                                 "attempt": 1}
    report(tenant, advance, child, "store", output={"where": "s3://x"})
    child.refresh_from_db()
    run.refresh_from_db()
    assert child.status == RunStatus.COMPLETED and child.workflow_hash
    archive = step(run, "archive")
    assert archive.output == {"run_id": str(child.run_id), "workflow_hash": child.workflow_hash,
                              "output": {"where": "s3://x"}}
    assert archive.receipt_hash and run.status == RunStatus.COMPLETED
    assert step(run, "after").input["child"]["workflow_hash"] == child.workflow_hash


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_a_child_that_fails_or_is_cancelled_fails_the_step_and_the_parent(tenant, advance, how):
    archive_parent(tenant)
    run = start(tenant, advance, "parent")
    (child,) = children(run)
    if how == "failed":
        report(tenant, advance, child, "store", status="failed")
    else:
        with advance():
            run_set_status(tenant=tenant, run_id=child.run_id, status="cancelled",
                           actor="user:op", reason="not needed")
    run.refresh_from_db()
    archive = step(run, "archive")
    assert archive.status == "failed"
    assert archive.error["code"] == f"child_run_{how}"
    assert archive.error["run_id"] == str(child.run_id)
    assert run.status == RunStatus.FAILED and step(run, "after").status == "cancelled"


def test_a_failed_child_is_retried_as_a_new_child_when_the_step_retries(tenant, advance):
    archive_parent(tenant, retry={"max_attempts": 2, "backoff": 0, "max_backoff": 0})
    run = start(tenant, advance, "parent")
    (first,) = children(run)
    report(tenant, advance, first, "store", status="failed")
    with advance():
        runs_sweep(now=timezone.now() + timedelta(seconds=5))  # the backoff is over
    first_child, second = children(run)
    assert first_child == first and second.status == RunStatus.RUNNING
    assert step(run, "archive").attempt == 2 and step(run, "archive").status == "running"
    report(tenant, advance, second, "store", output={"where": "w"})
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert step(run, "archive").output["run_id"] == str(second.run_id)


@pytest.mark.parametrize("target", ["cancelled", "failed"])
def test_ending_the_parent_cancels_its_children_and_grandchildren(tenant, advance, target):
    publish(tenant, "leaf", [{"id": "wait", "type": "external"}])
    publish(tenant, "middle", [{"id": "go", "type": "workflow", "workflow": "leaf"}])
    publish(tenant, "top", [{"id": "go", "type": "workflow", "workflow": "middle"}])
    run = start(tenant, advance, "top")
    (middle,) = children(run)
    (leaf,) = children(middle)
    assert leaf.status == RunStatus.RUNNING
    with advance():
        run_set_status(tenant=tenant, run_id=run.run_id, status=target, actor="user:op",
                       reason="stop it")
    for child in (middle, leaf):
        child.refresh_from_db()
        assert child.status == RunStatus.CANCELLED and child.workflow_hash
        change = events(child, "FC-RUN-002")[-1]
        assert change.actor == "user:op" and change.data["to"] == "cancelled"
        assert "stop it" in change.data["reason"] and "parent run" in change.data["reason"]
    assert step(leaf, "wait").status == "failed"  # run_ended
    run.refresh_from_db()
    assert run.status == target and step(run, "go").error["code"] == "run_ended"


def test_children_deeper_than_the_limit_are_refused(tenant, advance, settings):
    settings.FCORE_SUBWORKFLOW_MAX_DEPTH = 2
    publish(tenant, "d3", [{"id": "x", "type": "external"}])
    publish(tenant, "d2", [{"id": "go", "type": "workflow", "workflow": "d3"}])
    publish(tenant, "d1", [{"id": "go", "type": "workflow", "workflow": "d2"}])
    publish(tenant, "d0", [{"id": "go", "type": "workflow", "workflow": "d1"}])
    root = start(tenant, advance, "d0")
    (d1,) = children(root)
    (d2,) = children(d1)
    assert children(d2) == []
    d2.refresh_from_db()
    assert d2.status == RunStatus.FAILED
    refused = step(d2, "go")
    assert refused.error["code"] == "subworkflow_too_deep" and refused.error["retryable"] is False
    assert not [e for e in events(d2, "FC-STEP-001") if e.data["step_id"] == "go"]
    for run in (d1, root):  # the failure climbs up
        run.refresh_from_db()
        assert run.status == RunStatus.FAILED
        assert step(run, "go").error["code"] == "child_run_failed"


def test_a_child_that_ends_while_the_parent_waits_at_a_gate_is_recorded(tenant, advance):
    publish(tenant, "archive_flow", [{"id": "store", "type": "external"}])
    publish(tenant, "parent", [
        {"id": "archive", "type": "workflow", "workflow": "archive_flow", "after": []},
        {"id": "sign", "type": "approval", "after": []},
        {"id": "end", "type": "noop", "after": ["archive", "sign"]}])
    run = start(tenant, advance, "parent")
    assert run.status == RunStatus.PAUSED
    (child,) = children(run)
    report(tenant, advance, child, "store", output={})
    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED and step(run, "archive").status == "succeeded"
    gate = Gate.objects.get(run=run)
    with advance():
        run_gate_vote(tenant=tenant, run_id=run.run_id, gate_id=gate.id,
                      voter=Voter(actor="user:amara"), decision="approve")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


def test_a_flagged_workflow_step_waits_at_its_gate_before_its_child_starts(tenant, advance):
    policy_save(tenant=tenant, name="children", actor="user:priya", tier=1,
                applies_to={"workflows": ["parent"], "step_types": ["workflow"]},
                rules=[{"id": "look", "effect": "flag", "when": "true", "reason": "look"}])
    archive_parent(tenant)
    run = start(tenant, advance, "parent")
    assert run.status == RunStatus.PAUSED and children(run) == []
    gate = Gate.objects.get(run=run)
    with advance():
        run_gate_vote(tenant=tenant, run_id=run.run_id, gate_id=gate.id,
                      voter=Voter(actor="user:amara"), decision="approve")
    (child,) = children(run)
    assert child.status == RunStatus.RUNNING
    assert events(run, "FC-STEP-001")[-1].actor == "user:amara"


def test_a_lost_wake_up_is_recovered_by_the_sweeper(tenant, advance,
                                                     django_capture_on_commit_callbacks):
    archive_parent(tenant)
    run = start(tenant, advance, "parent")
    (child,) = children(run)
    with django_capture_on_commit_callbacks(execute=False):  # the parent's wake-up is lost
        step_report(tenant=tenant, run_id=child.run_id, step_id="store", actor="user:exec",
                    status="succeeded", output={"where": "w"})
    with django_capture_on_commit_callbacks(execute=False) as lost:  # its last step: the
        step_execute(str(child.run_id), "done", 1, ECHO)  # parent's wake-up is lost again
    assert lost
    child.refresh_from_db()
    assert child.status == RunStatus.COMPLETED
    assert step(run, "archive").status == "running"
    assert runs_sweep().parents_woken == 0  # within the grace: the wake-up may be on its way
    with advance():
        sweep = runs_sweep(now=timezone.now() + timedelta(seconds=10))
    assert sweep.parents_woken == 1
    run.refresh_from_db()
    assert step(run, "archive").status == "succeeded" and run.status == RunStatus.COMPLETED
    assert runs_sweep(now=timezone.now() + timedelta(seconds=10)).parents_woken == 0


def test_a_lost_child_start_is_recovered_by_the_sweeper(tenant, advance,
                                                        django_capture_on_commit_callbacks):
    archive_parent(tenant)
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_create(tenant=tenant, workflow="parent", input={}, actor="user:olivia")
    with django_capture_on_commit_callbacks(execute=False):
        step_execute(str(run.run_id), "pay", 1, ECHO)  # starts the child, whose task is lost
    (child,) = children(run)
    assert child.status == RunStatus.PENDING
    with advance():
        runs_sweep(now=timezone.now() + timedelta(seconds=60))
    child.refresh_from_db()
    assert child.status == RunStatus.RUNNING


def test_an_unknown_child_workflow_fails_the_step_closed(tenant, advance):
    publish(tenant, "parent", [{"id": "go", "type": "workflow", "workflow": "nope"}])
    run = start(tenant, advance, "parent")
    assert run.status == RunStatus.FAILED and children(run) == []
    assert step(run, "go").error["code"] == "unknown_workflow"


def test_a_map_over_a_workflow_step_starts_one_child_per_item(tenant, advance):
    publish(tenant, "one", [{"id": "e", "type": ECHO}], output={"n": "=run.input.n"})
    publish(tenant, "many", [
        {"id": "fan", "type": "workflow", "workflow": "one", "map": "run.input.ns",
         "max_concurrency": 2, "input": {"n": "=item"}}])
    run = start(tenant, advance, "many", {"ns": [1, 2, 3]})
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    items = step(run, "fan").output["items"]
    assert [i["output"] for i in items] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert {c.parent_step_id for c in children(run)} == {"fan[0]", "fan[1]", "fan[2]"}


def test_a_child_is_of_its_parents_tenant_only(tenant, advance):
    other = Tenant.objects.create(slug="tenant_other", name="Other")
    publish(other, "archive_flow", [{"id": "store", "type": "external"}])
    publish(tenant, "parent", [{"id": "go", "type": "workflow", "workflow": "archive_flow"}])
    run = start(tenant, advance, "parent")  # the other tenant's archive_flow is not found
    assert run.status == RunStatus.FAILED and children(run) == []
    archive_parent(tenant)
    run = start(tenant, advance, "parent")
    (child,) = children(run)
    assert child.tenant_id == tenant.id
    with pytest.raises(NotFound):
        run_set_status(tenant=other, run_id=child.run_id, status="cancelled",
                       actor="user:op")
