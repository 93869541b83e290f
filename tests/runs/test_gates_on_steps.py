"""Gates requested through the API on steps, and what an approval releases."""

import pytest

pytestmark = pytest.mark.django_db


def new_run(api, amount):
    return api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                        "input": {"amount": amount}}).json()["run_id"]


def run_of(api, run_id):
    return api.get(f"/workflows/runs/{run_id}?include_logs=true").json()


def test_gate_on_a_pending_step_cannot_bypass_its_policy_decision(api, approver):
    run_id = new_run(api, 5_000_000)  # step_2 is denied by policy
    gate = api.post(f"/workflows/runs/{run_id}/gates", {"step_id": "step_2", "reason": "x"})
    assert gate.status_code == 201
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate.json()['gate_id']}",
                   {"decision": "approve"})
    run = run_of(api, run_id)
    steps = {s["step_id"]: s["status"] for s in run["steps"]}
    assert run["status"] == "running" and steps["step_2"] == "pending"
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    run = run_of(api, run_id)
    assert run["status"] == "failed"
    assert [d["decision"] for d in run["decisions"] if d["step_id"] == "step_2"] == ["deny"]


def test_report_on_a_step_held_by_an_open_gate_is_refused(api, approver):
    run_id = new_run(api, 1)
    gate = api.post(f"/workflows/runs/{run_id}/gates",
                    {"step_id": "step_1", "reason": "executor asks a human"}).json()
    refused = api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    assert refused.status_code == 409 and refused.json()["code"] == "gate_open"
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}", {"decision": "approve"})
    ok = api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    assert ok.status_code == 200


def test_resume_is_recorded_before_the_released_step_starts(api, approver):
    run_id = new_run(api, 25000)
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}", {"decision": "approve"})
    logs = run_of(api, run_id)["logs"]
    resumed = next(i for i, e in enumerate(logs) if e["code"] == "FC-RUN-002"
                   and e["data"]["from"] == "paused")
    started = next(i for i, e in enumerate(logs) if e["code"] == "FC-STEP-001"
                   and e["data"]["step_id"] == "step_2")
    assert resumed < started


def test_operator_pause_is_not_lifted_by_a_gate_approval(api, approver):
    run_id = new_run(api, 1)
    gate = api.post(f"/workflows/runs/{run_id}/gates", {"reason": "look"}).json()
    # the run is already paused by the gate; an operator cannot pause it twice
    again = api.patch(f"/workflows/runs/{run_id}/status", {"status": "paused", "reason": "x"})
    assert again.status_code == 409 and again.json()["current"] == "paused"
    assert run_of(api, run_id)["paused_for_gate"] is True
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}", {"decision": "approve"})
    assert run_of(api, run_id)["status"] == "running"
    api.patch(f"/workflows/runs/{run_id}/status", {"status": "paused", "reason": "ops hold"})
    gate2 = api.post(f"/workflows/runs/{run_id}/gates", {"reason": "again"}).json()
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate2['gate_id']}", {"decision": "approve"})
    run = run_of(api, run_id)
    assert run["status"] == "paused" and run["status_reason"] == "ops hold"


@pytest.mark.parametrize("reason", ["gateway down", "gate at step_9: by hand", "gate"])
def test_operator_pause_whose_reason_starts_with_gate_stays_paused(api, approver, reason):
    """The pause's cause is a field: an operator's reason that reads like a gate pause is
    not lifted by a gate approval."""
    run_id = new_run(api, 1)
    assert api.patch(f"/workflows/runs/{run_id}/status",
                     {"status": "paused", "reason": reason}).status_code == 200
    gate = api.post(f"/workflows/runs/{run_id}/gates", {"reason": "look"}).json()
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}", {"decision": "approve"})
    run = run_of(api, run_id)
    assert (run["status"], run["status_reason"]) == ("paused", reason)
    assert run["paused_for_gate"] is False
