"""A change's answer is the run as that change committed it: what a read right after it
returns (the answer is rendered from the steps the run lock wrote, not read again)."""

import pytest

pytestmark = pytest.mark.django_db


def read(api, run_id) -> dict:
    answer = api.get(f"/workflows/runs/{run_id}").json()
    del answer["audit_seq"]  # only a read carries it
    return answer


def report(api, run_id, step_id, **body):
    response = api.patch(f"/workflows/runs/{run_id}/steps/{step_id}",
                         {"status": "succeeded", "output": {"step": step_id}, **body})
    assert response.status_code == 200, response.json()
    return response.json()


def test_create_answers_the_run_as_read(api):
    response = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                            "input": {"amount": 500}})
    assert response.status_code == 201
    created = response.json()
    assert created["steps"][0]["status"] == "running"
    assert created == read(api, created["run_id"])


def test_each_report_answers_the_run_as_read(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 500}}).json()["run_id"]
    for step_id in ("step_1", "step_2", "step_3", "step_4", "step_5"):
        answer = report(api, run_id, step_id)
        assert answer == read(api, run_id), step_id
    assert answer["status"] == "completed" and answer["workflow_hash"]
    assert [d["step_id"] for d in answer["decisions"]] == [
        "step_1", "step_2", "step_3", "step_4", "step_5"]


def test_report_that_opens_a_gate_answers_it(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    answer = report(api, run_id, "step_1")
    assert [g["status"] for g in answer["gates"]] == ["open"]
    assert answer["gates"][0]["step_id"] == "step_2"
    assert answer["gates"][0]["run_id"] == run_id
    assert answer == read(api, run_id)


def test_failed_report_answers_the_failed_run(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 500}}).json()["run_id"]
    answer = report(api, run_id, "step_1", status="failed", output=None,
                    error={"message": "gateway timeout"})
    assert answer["steps"][0]["status"] == "failed"
    assert answer == read(api, run_id)


def test_replayed_key_answers_the_first_run(api):
    body = {"workflow": "pt004_execution_spine", "input": {"amount": 500},
            "idempotency_key": "answers-1"}
    first = api.post("/workflows/runs", body).json()
    report(api, first["run_id"], "step_1")
    replayed = api.post("/workflows/runs", body)
    assert replayed.status_code == 200
    assert replayed.json() == read(api, first["run_id"])
