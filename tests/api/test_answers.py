"""A change's answer is the run as that change committed it: what a read right after it
returns (the answer is rendered from the steps the run lock wrote, not read again)."""

import pytest

from audit.stored import events_readable
from fcore.interfaces.api import serializers as s
from runs import selectors

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


@pytest.mark.parametrize("with_logs", [False, True])
def test_a_serializer_built_once_renders_as_a_new_one(api, pt004, with_logs):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    report(api, run_id, "step_1")  # a decision per step so far and an open gate
    for _ in range(2):  # the second time from the serializer built the first time
        run = selectors.run_read(pt004, run_id)
        run.steps_list, run.decisions_list, run.gates_list = selectors.run_parts(run)
        run.children_list = []
        if with_logs:
            run.logs_list = events_readable(selectors.run_events(run).select_related("stream"))
        assert s.render(s.RunOut, run) == s.RunOut(run).data
    assert ("logs" in s.render(s.RunOut, run)) is with_logs


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_vote_answers_the_gate_as_read(api, approver, decision):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    gate_id = report(api, run_id, "step_1")["gates"][0]["gate_id"]
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    voted = approver.patch(path, {"decision": decision, "comment": "looked"})
    assert voted.status_code == 200, voted.json()
    answer = voted.json()
    assert answer["status"] == {"approve": "approved", "reject": "rejected"}[decision]
    assert [v["actor"] for v in answer["approvals"]] == ["client:second_approver"]
    assert answer == api.get(path).json()
