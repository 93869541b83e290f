"""A flag rule whose gate block is unusable (stored before gate blocks were validated on
save, as a pre-fix database would hold it) fails the step closed: a `deny` decision with
reason `policy_error: …`, never an exception in the request or the task that decided."""

import pytest

from gates.models import Policy, PolicyDecision
from gates.policies import policy_save
from runs.definitions import definition_publish
from runs.models import Run, RunStatus, StepRun, StepStatus

pytestmark = pytest.mark.django_db

BAD_GATE = {"required_approvals": "two"}


def store_bad_flag_rule(tenant, *, when: str) -> Policy:
    """A valid flag rule saved, then its gate block broken behind validation's back."""
    policy, _ = policy_save(tenant=tenant, name="bad_gate", tier=5, actor="system:test",
                            rules=[{"id": "two-people", "effect": "flag", "when": when,
                                    "gate": {"required_approvals": 2}}])
    rules = [{**policy.rules[0], "gate": BAD_GATE}]
    Policy.objects.filter(pk=policy.pk).update(rules=rules)
    return policy


def decisions(run_id) -> list[PolicyDecision]:
    return list(PolicyDecision.objects.filter(step_run__run__run_id=run_id)
                .select_related("step_run").order_by("evaluated_at", "id"))


def assert_failed_closed(run_id, step_id: str) -> None:
    run = Run.objects.get(run_id=run_id)
    assert run.status == RunStatus.FAILED
    last = decisions(run_id)[-1]
    assert last.step_run.step_id == step_id and last.decision == "deny"
    assert last.reason.startswith("policy_error: bad_gate/two-people: gate settings: ")
    assert "required_approvals" in last.reason
    assert StepRun.objects.get(run=run, step_id=step_id).status == StepStatus.CANCELLED


def test_a_run_whose_first_step_is_flagged_by_a_broken_gate_block_fails_closed(api, pt004):
    store_bad_flag_rule(pt004, when='step.id == "step_1"')
    response = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"})
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "failed"
    assert_failed_closed(response.json()["run_id"], "step_1")


def test_the_evaluate_endpoint_answers_deny_for_a_broken_gate_block(api, pt004):
    store_bad_flag_rule(pt004, when='step.id == "step_1"')
    response = api.post("/workflows/policies/evaluate",
                        {"workflow": "pt004_execution_spine", "step_id": "step_1"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decision"] == "deny" and body["gate"] == {}
    assert body["reason"].startswith("policy_error: bad_gate/two-people: gate settings: ")


def test_an_executor_report_before_a_broken_gate_block_fails_the_run_closed(api, pt004):
    store_bad_flag_rule(pt004, when='step.id == "step_2"')
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    response = api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    assert response.status_code == 200, response.content
    assert_failed_closed(run_id, "step_2")


def test_an_internal_step_before_a_broken_gate_block_runs_once_and_the_run_fails_closed(
        api, pt004, advance):
    definition_publish(tenant=pt004, name="internal_first", actor="system:test", steps=[
        {"id": "prepare", "type": "noop"}, {"id": "send", "type": "noop", "after": ["prepare"]}])
    store_bad_flag_rule(pt004, when='step.id == "send"')
    response = api.post("/workflows/runs", {"workflow": "internal_first"})
    assert response.status_code == 201, response.content
    run_id = response.json()["run_id"]
    prepare = StepRun.objects.get(run__run_id=run_id, step_id="prepare")
    assert (prepare.status, prepare.attempt) == (StepStatus.SUCCEEDED, 1)
    assert_failed_closed(run_id, "send")
