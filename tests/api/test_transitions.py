"""Every transition the state machines refuse answers 409 with `current` and `allowed`."""

import pytest

pytestmark = pytest.mark.django_db

RUN_TARGETS = ["running", "paused", "cancelled", "failed", "completed", "pending"]


def new_run(api, amount=1):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": amount}}).json()["run_id"]
    return run_id


def set_status(api, run_id, status):
    return api.patch(f"/workflows/runs/{run_id}/status", {"status": status})


def assert_409(response, current, allowed):
    body = response.json()
    assert response.status_code == 409, body
    assert body["code"] == "invalid_transition"
    assert body["current"] == current
    assert body["allowed"] == sorted(allowed)


@pytest.mark.parametrize("target", ["paused", "running", "completed", "pending"])
def test_running_run_refuses(api, target):
    run_id = new_run(api)
    if target == "paused":  # allowed from running: check the second pause instead
        assert set_status(api, run_id, "paused").status_code == 200
        assert_409(set_status(api, run_id, "paused"), "paused",
                   ["running", "cancelled", "failed"])
    else:
        assert_409(set_status(api, run_id, target), "running",
                   ["paused", "cancelled", "failed"])


@pytest.mark.parametrize("end", ["cancelled", "failed"])
@pytest.mark.parametrize("target", RUN_TARGETS)
def test_ended_run_refuses_everything(api, end, target):
    run_id = new_run(api)
    assert set_status(api, run_id, end).status_code == 200
    assert_409(set_status(api, run_id, target), end, [])


def test_completed_run_refuses_everything(api):
    run_id = new_run(api)
    for i in range(1, 6):
        api.patch(f"/workflows/runs/{run_id}/steps/step_{i}", {"status": "succeeded"})
    for target in RUN_TARGETS:
        assert_409(set_status(api, run_id, target), "completed", [])


def test_resume_while_a_gate_is_open_is_a_conflict(api):
    run_id = new_run(api, 25000)
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    response = set_status(api, run_id, "running")
    assert response.status_code == 409 and response.json()["code"] == "gate_open"


def test_step_reports_refused_unless_running(api):
    run_id = new_run(api)
    pending = api.patch(f"/workflows/runs/{run_id}/steps/step_3", {"status": "succeeded"})
    assert_409(pending, "pending", [])
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    twice = api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "failed"})
    assert_409(twice, "succeeded", [])
    unknown = api.patch(f"/workflows/runs/{run_id}/steps/nope", {"status": "succeeded"})
    assert unknown.status_code == 404


def test_failed_step_fails_the_run(api):
    run_id = new_run(api)
    api.patch(f"/workflows/runs/{run_id}/steps/step_1",
              {"status": "failed", "error": {"detail": "executor crashed"}})
    run = api.get(f"/workflows/runs/{run_id}").json()
    assert run["status"] == "failed"
    assert run["steps"][0]["error"] == {"detail": "executor crashed"}
    assert {s["status"] for s in run["steps"][1:]} == {"cancelled"}


def test_votes_on_a_resolved_gate_are_refused(api, approver):
    run_id = new_run(api, 25000)
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    assert approver.patch(path, {"decision": "reject", "comment": "no"}).status_code == 200
    late = api.as_sub("third").patch(path, {"decision": "approve"})
    assert_409(late, "rejected", [])
    run = api.get(f"/workflows/runs/{run_id}").json()
    assert run["status"] == "failed"


def test_same_actor_cannot_vote_twice(api):
    run_id = new_run(api, 25000)
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate = api.post(f"/workflows/runs/{run_id}/gates",
                    {"reason": "two people", "required_approvals": 2})
    assert gate.status_code == 201, gate.json()
    path = f"/workflows/runs/{run_id}/gates/{gate.json()['gate_id']}"
    voter = api.as_sub("voter_one")
    assert voter.patch(path, {"decision": "approve"}).status_code == 200
    again = voter.patch(path, {"decision": "approve"})
    assert again.status_code == 409 and again.json()["code"] == "already_voted"
