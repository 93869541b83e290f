"""Gate settings, groups, four-eyes and input through the API (PT-005 items 1-6): the
cases not already covered by tests/runs/test_engine.py and tests/api/."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from fcore.members import member_set
from gates.models import Gate, GateStatus
from runs.bundles import bundle_load
from runs.services import gates_expire_due

pytestmark = pytest.mark.django_db

FLAGGED_BUNDLE = {
    "tenant": "tenant_omega",
    "workflows": [{"name": "wire_transfer", "steps": [
        {"id": "prepare", "type": "external"},
        {"id": "send", "type": "external", "after": ["prepare"]}]}],
    "policies": [{
        "name": "wire_review", "tier": 2,
        "applies_to": {"workflows": ["wire_transfer"], "step_types": ["*"]},
        "rules": [{"id": "big-wire", "effect": "flag",
                   "when": 'step.id == "send" && input.amount > 100',
                   "reason": "big wire",
                   "gate": {"required_approvals": 2, "approver_group": "finance",
                            "expires_in": 600, "on_timeout": "escalate",
                            "escalate_to": "operators",
                            "input_schema": {"type": "object", "required": ["ticket"]}}}],
    }],
}


def test_a_flag_rules_gate_block_configures_the_gate(api):
    bundle_load(FLAGGED_BUNDLE, actor="system:test")
    run_id = api.post("/workflows/runs", {"workflow": "wire_transfer",
                                          "input": {"amount": 500}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/prepare", {"status": "succeeded"})
    (gate,) = api.get(f"/workflows/runs/{run_id}/gates").json()
    assert (gate["step_id"], gate["source"], gate["required_approvals"],
            gate["approver_group"], gate["on_timeout"], gate["escalate_to"]) == (
        "send", "policy", 2, "finance", "escalate", "operators")
    assert gate["input_schema"] == {"type": "object", "required": ["ticket"]}
    assert gate["status"] == "open" and gate["expires_at"]


def test_post_gates_takes_every_setting(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    body = {"reason": "needs finance", "step_id": "step_1", "required_approvals": 3,
            "approver_group": "finance", "expires_in": 120, "on_timeout": "escalate",
            "escalate_to": "operators",
            "input_schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}
    response = api.post(f"/workflows/runs/{run_id}/gates", body)
    assert response.status_code == 201, response.json()
    gate = response.json()
    for key in ("required_approvals", "approver_group", "on_timeout", "escalate_to",
                "input_schema", "reason", "step_id"):
        assert gate[key] == body[key], key
    assert gate["requested_by"] == "client:harness" and gate["needs_review"] is False


def test_a_gate_that_never_expires_must_say_so_and_stays_open(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    gate = api.post(f"/workflows/runs/{run_id}/gates",
                    {"reason": "no rush", "expires_in": None}).json()
    assert gate["expires_at"] is None
    other = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    default = api.post(f"/workflows/runs/{other}/gates", {"reason": "default"}).json()
    assert default["expires_at"] is not None  # by default a gate expires (3 days)
    gates_expire_due(now=timezone.now() + timedelta(days=365))
    assert Gate.objects.get(pk=gate["gate_id"]).status == GateStatus.OPEN
    assert Gate.objects.get(pk=default["gate_id"]).status == GateStatus.EXPIRED


@pytest.fixture
def people(pt004):
    Group.objects.get_or_create(name="finance")
    for username, groups in [("adam", ["approvers"]), ("olga", ["operators"]),
                             ("fred", ["finance"])]:
        member_set(tenant=pt004, username=username, groups=groups)
    return pt004


def session(username) -> APIClient:
    client = APIClient()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def test_people_vote_only_on_gates_of_their_group(api, people, advance):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    gate = api.post(f"/workflows/runs/{run_id}/gates",
                    {"reason": "finance only", "approver_group": "finance"}).json()
    path = f"/workflows/runs/{run_id}/gates/{gate['gate_id']}"
    for username in ("adam", "olga"):
        with advance():
            response = session(username).patch(path, {"decision": "approve"}, format="json")
        assert response.status_code == 403, username
        expected = "not_an_approver" if username == "adam" else "forbidden"  # olga: no scope
        assert response.json()["code"] == expected
    with advance():
        response = session("fred").patch(path, {"decision": "approve"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"  # scope
    member_set(tenant=people, username="fred", groups=["finance", "approvers"])
    with advance():
        response = session("fred").patch(path, {"decision": "approve", "comment": "ok"},
                                         format="json")
    assert response.status_code == 200 and response.json()["status"] == "approved"


def test_the_gate_requester_cannot_vote_through_the_api(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    asker = api.as_sub("asker")
    gate = asker.post(f"/workflows/runs/{run_id}/gates", {"reason": "look"}).json()
    refused = asker.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}",
                          {"decision": "approve"})
    assert refused.status_code == 403 and refused.json()["code"] == "four_eyes"


def test_input_that_does_not_match_the_schema_is_a_400_with_field_errors(api, approver):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    schema = {"type": "object", "required": ["ticket"],
              "properties": {"ticket": {"type": "string", "pattern": "^T-[0-9]+$"},
                             "risk": {"enum": ["low", "high"]}}}
    gate = api.post(f"/workflows/runs/{run_id}/gates",
                    {"reason": "ticket please", "step_id": "step_1",
                     "input_schema": schema}).json()
    path = f"/workflows/runs/{run_id}/gates/{gate['gate_id']}"
    bad = approver.patch(path, {"decision": "approve", "input": {"ticket": "x", "risk": "mid"}})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_input"
    assert bad.json()["errors"] == {"ticket": "'x' does not match '^T-[0-9]+$'",
                                    "risk": "'mid' is not one of ['low', 'high']"}
    ok = approver.patch(path, {"decision": "approve", "input": {"ticket": "T-1", "risk": "low"}})
    assert ok.status_code == 200 and ok.json()["resolution"]["input"] == {"ticket": "T-1",
                                                                          "risk": "low"}
