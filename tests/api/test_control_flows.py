"""The three PT-004 control flows through the HTTP API: transitions and audit codes."""

import pytest

pytestmark = pytest.mark.django_db


def run_transitions(run: dict) -> list[str]:
    moves = [e["data"] for e in run["logs"] if e["code"] == "FC-RUN-002"]
    return [moves[0]["from"]] + [m["to"] for m in moves] if moves else []


def codes(run: dict) -> list[str]:
    return [e["code"] for e in run["logs"]]


def create(api, amount):
    response = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                            "input": {"amount": amount}})
    assert response.status_code == 201, response.json()
    return response.json()


def report(api, run_id, step_id, status="succeeded", output=None):
    response = api.patch(f"/workflows/runs/{run_id}/steps/{step_id}",
                         {"status": status, "output": output or {"done": step_id}})
    assert response.status_code == 200, response.json()
    return response.json()


def fetch(api, run_id):
    response = api.get(f"/workflows/runs/{run_id}?include_logs=true")
    assert response.status_code == 200
    return response.json()


def test_happy_path_completes_with_every_step_a_decision(api):
    created = create(api, 500)
    # Born running: the first step is decided and started by the creating request (its
    # executor works after it); the run still went pending → running on its chain.
    assert created["status"] == "running" and created["current_step"] == "step_1"
    run_id = created["run_id"]
    run = fetch(api, run_id)
    assert run["status"] == "running" and run["current_step"] == "step_1"
    for index in range(1, 6):
        run = fetch(api, run_id)
        step = next(s for s in run["steps"] if s["step_id"] == f"step_{index}")
        assert step["status"] == "running", (index, run["steps"])
        assert run["step_index"] == index - 1
        report(api, run_id, f"step_{index}")
    run = fetch(api, run_id)
    assert run["status"] == "completed"
    assert run_transitions(run) == ["pending", "running", "completed"]
    assert [d["decision"] for d in run["decisions"]] == ["allow"] * 5
    assert codes(run).count("FC-POL-001") == 5
    assert codes(run).count("FC-STEP-001") == 5 and codes(run).count("FC-STEP-002") == 5
    assert codes(run)[0] == "FC-RUN-001" and codes(run)[-1] == "FC-RUN-003"
    assert all(s["receipt_hash"] and s["input_hash"] and s["output_hash"] for s in run["steps"])
    assert len(run["workflow_hash"]) == 64
    receipt = api.get(f"/workflows/runs/{run_id}/receipt").json()
    assert receipt["verified"] is True and receipt["workflow_hash"] == run["workflow_hash"]
    assert [r["step_id"] for r in receipt["receipts"]] == [f"step_{i}" for i in range(1, 6)]
    messages = [e["message"] for e in run["logs"] if e["code"] == "FC-RUN-002"]
    assert messages[0].startswith("Run status changed from pending to running")


def test_policy_flag_pauses_until_a_second_actor_approves(api, approver):
    run_id = create(api, 25000)["run_id"]
    report(api, run_id, "step_1")
    run = fetch(api, run_id)
    assert run["status"] == "paused"
    step_2 = next(s for s in run["steps"] if s["step_id"] == "step_2")
    assert step_2["status"] == "waiting" and step_2["decision"] == "flag"
    decision = next(d for d in run["decisions"] if d["step_id"] == "step_2")
    assert decision["rules_triggered"][0]["rule"] == "large-amount"
    assert decision["policy_version"] == 1 and decision["tier"] == 2
    (gate,) = [g for g in run["gates"] if g["status"] == "open"]
    assert gate["step_id"] == "step_2"

    refused = api.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}",
                        {"decision": "approve"})
    assert refused.status_code == 403 and refused.json()["code"] == "four_eyes"

    approved = approver.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}",
                              {"decision": "approve", "comment": "checked the invoice"})
    assert approved.status_code == 200, approved.json()
    assert approved.json()["status"] == "approved"
    assert approved.json()["approvals"][0]["actor"] == "client:second_approver"
    run = fetch(api, run_id)
    assert run["status"] == "running" and run["current_step"] == "step_2"
    for index in range(2, 6):
        report(api, run_id, f"step_{index}")
    run = fetch(api, run_id)
    assert run["status"] == "completed"
    assert run_transitions(run) == ["pending", "running", "paused", "running", "completed"]
    for code in ("FC-GATE-001", "FC-GATE-002", "FC-GATE-003"):
        assert code in codes(run)
    assert api.get(f"/workflows/runs/{run_id}/receipt").json()["verified"] is True


def test_policy_deny_fails_closed_and_cancels_the_rest(api):
    run_id = create(api, 5_000_000)["run_id"]
    report(api, run_id, "step_1")
    run = fetch(api, run_id)
    assert run["status"] == "failed"
    assert run_transitions(run) == ["pending", "running", "failed"]
    statuses = {s["step_id"]: s["status"] for s in run["steps"]}
    assert statuses == {"step_1": "succeeded", "step_2": "cancelled", "step_3": "cancelled",
                        "step_4": "cancelled", "step_5": "cancelled"}
    decision = next(d for d in run["decisions"] if d["step_id"] == "step_2")
    assert decision["decision"] == "deny" and "hard limit" in decision["reason"]
    assert codes(run).count("FC-STEP-005") == 4
    assert codes(run)[-1] == "FC-RUN-003"
    # nothing can be reported on a step that the deny cancelled
    late = api.patch(f"/workflows/runs/{run_id}/steps/step_2", {"status": "succeeded"})
    assert late.status_code == 409 and late.json()["current"] == "cancelled"


def test_alias_creates_reads_and_updates_status(api):
    created = api.post("/api/fc/runs", {"workflow": "pt004_execution_spine",
                                        "input": {"amount": 1}})
    assert created.status_code == 201
    run_id = created.json()["run_id"]
    paused = api.patch(f"/api/fc/runs/{run_id}", {"status": "paused", "reason": "maintenance"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = api.patch(f"/api/fc/runs/{run_id}", {"status": "running"})
    assert resumed.json()["status"] == "running"
    fetched = api.get(f"/api/fc/runs/{run_id}?include_logs=true").json()
    assert [e["data"].get("reason") for e in fetched["logs"] if e["code"] == "FC-RUN-002"][1] \
        == "maintenance"
