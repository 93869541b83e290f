"""Concurrent requests on one object: exactly one wins, the others get 409.

Real transactions on PostgreSQL: each thread has its own connection and row locks decide.
"""


import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from rest_framework.test import APIClient

from fcore.members import member_set
from fcore.models import Tenant
from tests.concurrency import concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.fail("concurrency tests need PostgreSQL (run them with DATABASE_URL=postgres://…)")


def patch(api, sub, path, body):
    token = api.as_sub(sub).token()
    response = APIClient().patch(path, body, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")
    return response.status_code, response.json()


@pytest.fixture
def flagged(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    return run_id, gate_id


def test_twelve_concurrent_votes_one_wins(api, flagged):
    run_id, gate_id = flagged
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    results = concurrently(12, lambda i: patch(api, f"approver_{i}", path,
                                               {"decision": "approve", "comment": str(i)}))
    statuses = sorted(code for code, _ in results)
    assert statuses == [200] + [409] * 11, results
    assert {body["code"] for code, body in results if code == 409} == {"invalid_transition"}
    assert all(body["current"] == "approved" for code, body in results if code == 409)
    gate = api.get(path).json()
    assert gate["status"] == "approved" and len(gate["approvals"]) == 1
    run = api.get(f"/workflows/runs/{run_id}?include_logs=true").json()
    assert run["status"] == "running"
    codes = [e["code"] for e in run["logs"]]
    assert codes.count("FC-GATE-002") == 1 and codes.count("FC-GATE-003") == 1
    assert api.get("/workflows/audit/verify").json()["ok"] is True


def test_concurrent_step_reports_record_once(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    path = f"/workflows/runs/{run_id}/steps/step_1"
    results = concurrently(8, lambda i: patch(api, "executor", path,
                                              {"status": "succeeded", "output": {"i": i}}))
    assert sorted(code for code, _ in results) == [200] + [409] * 7
    run = api.get(f"/workflows/runs/{run_id}?include_logs=true").json()
    assert [e["code"] for e in run["logs"]].count("FC-STEP-002") == 1


def test_concurrent_status_changes_one_wins(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    path = f"/workflows/runs/{run_id}/status"
    targets = ["cancelled", "failed", "paused", "cancelled", "failed", "paused"]
    results = concurrently(6, lambda i: patch(api, "operator", path, {"status": targets[i]}))
    codes = [code for code, _ in results]
    winners = [targets[i] for i, code in enumerate(codes) if code == 200]
    # a pause can be followed by a cancel or fail; nothing else may succeed twice
    assert codes.count(200) in (1, 2) and all(c in (200, 409) for c in codes), results
    if len(winners) == 2:
        assert winners.count("paused") == 1
    run = api.get(f"/workflows/runs/{run_id}").json()
    assert run["status"] in {"cancelled", "failed", "paused"}


def requested_gate(api, required: int):
    """A running pt004 run with a gate of `required` approvals requested by the harness."""
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 1}}).json()["run_id"]
    gate = api.post(f"/workflows/runs/{run_id}/gates",
                    {"reason": "many eyes", "required_approvals": required}).json()
    return run_id, gate["gate_id"]


def test_twenty_concurrent_votes_are_counted_exactly_and_resolve_once(api):
    run_id, gate_id = requested_gate(api, 20)
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    results = concurrently(20, lambda i: patch(api, f"approver_{i}", path,
                                               {"decision": "approve", "comment": str(i)}))
    assert [code for code, _ in results] == [200] * 20, results
    gate = api.get(path).json()
    assert gate["status"] == "approved"
    assert len(gate["approvals"]) == 20
    assert {a["actor"] for a in gate["approvals"]} == {f"client:approver_{i}" for i in range(20)}
    assert [body["status"] for _, body in results].count("approved") == 1
    run = api.get(f"/workflows/runs/{run_id}?include_logs=true").json()
    votes = [e for e in run["logs"] if e["code"] == "FC-GATE-002"]
    assert sorted(e["data"]["approvals"] for e in votes) == list(range(1, 21))
    assert all(e["data"]["required_approvals"] == 20 for e in votes)
    resolved = [e for e in run["logs"] if e["code"] == "FC-GATE-003"]
    assert len(resolved) == 1 and resolved[0]["data"]["status"] == "approved"
    assert len(resolved[0]["data"]["votes"]) == 20
    assert resolved[0]["seq"] > max(e["seq"] for e in votes)
    assert run["status"] == "running"
    resumed = [e for e in run["logs"] if e["code"] == "FC-RUN-002"
               and e["data"]["from"] == "paused"]
    assert len(resumed) == 1
    assert api.get("/workflows/audit/verify").json()["ok"] is True


def test_twenty_concurrent_votes_on_a_quorum_of_five(api):
    run_id, gate_id = requested_gate(api, 5)
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    results = concurrently(20, lambda i: patch(api, f"approver_{i}", path,
                                               {"decision": "approve"}))
    codes = [code for code, _ in results]
    assert sorted(codes) == [200] * 5 + [409] * 15, results
    losers = [body for code, body in results if code == 409]
    assert {(b["code"], b["current"]) for b in losers} == {("invalid_transition", "approved")}
    gate = api.get(path).json()
    assert gate["status"] == "approved" and len(gate["approvals"]) == 5
    winners = {f"client:approver_{i}" for i, (code, _) in enumerate(results) if code == 200}
    assert {a["actor"] for a in gate["approvals"]} == winners
    run = api.get(f"/workflows/runs/{run_id}?include_logs=true").json()
    votes = [e for e in run["logs"] if e["code"] == "FC-GATE-002"]
    assert sorted(e["data"]["approvals"] for e in votes) == [1, 2, 3, 4, 5]
    assert [e["code"] for e in run["logs"]].count("FC-GATE-003") == 1
    assert api.get("/workflows/audit/verify").json()["ok"] is True


def test_a_break_glass_override_racing_votes_resolves_the_gate_once(api):
    member_set(tenant=Tenant.objects.get(slug=api.tenant), username="otto",
               groups=["operators"])
    otto = get_user_model().objects.get(username="otto")
    otto.user_permissions.add(Permission.objects.get(codename="override_gate"))
    run_id, gate_id = requested_gate(api, 1)
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"

    def act(i):
        if i == 0:
            client = APIClient()
            client.force_login(otto)
            response = client.post(f"{path}/override", {"justification": "now"}, format="json")
            return response.status_code, response.json()
        return patch(api, f"approver_{i}", path, {"decision": "approve"})

    results = concurrently(8, act)
    assert sorted(code for code, _ in results) == [200] + [409] * 7, results
    gate = api.get(path).json()
    assert gate["status"] in ("approved", "overridden")
    run = api.get(f"/workflows/runs/{run_id}?include_logs=true").json()
    codes = [e["code"] for e in run["logs"]]
    assert codes.count("FC-GATE-003") + codes.count("FC-GATE-005") == 1
    assert run["status"] == "running"
