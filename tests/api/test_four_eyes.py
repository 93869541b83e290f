"""Four-eyes between machines: per actor by default; with the tenant setting
`four_eyes: actor_and_key` the API key that created the run or requested the gate never
votes on it, whatever sub it names."""

import pytest
from django.core.exceptions import ValidationError

from fcore.clients import api_client_create
from tests.conftest import ALL_SCOPES, Api

pytestmark = pytest.mark.django_db
RUNS = "/workflows/runs"


@pytest.fixture
def other_key(api, pt004) -> Api:
    client, secret = api_client_create(tenant=pt004, name="approver-bot", actor="system:test",
                                       scopes=ALL_SCOPES.split())
    return Api(api.http, client.kid, secret, pt004.slug, api.advance, sub="approver-bot")


def strict(tenant):
    tenant.settings = {**tenant.settings, "four_eyes": "actor_and_key"}
    tenant.save()


def create_run(api) -> str:
    response = api.post(RUNS, {"workflow": "pt004_execution_spine", "input": {"amount": 10}})
    assert response.status_code == 201, response.json()
    return response.json()["run_id"]


def request_gate(api, run_id) -> int:
    response = api.post(f"{RUNS}/{run_id}/gates", {"reason": "check"})
    assert response.status_code == 201, response.json()
    return response.json()["gate_id"]


def vote(api, run_id, gate_id):
    return api.patch(f"{RUNS}/{run_id}/gates/{gate_id}", {"decision": "approve"})


def test_by_default_one_key_approves_as_a_second_actor(api):
    """What the PT-004 proof does: one harness key, two actors."""
    run_id = create_run(api)
    gate_id = request_gate(api, run_id)
    assert vote(api, run_id, gate_id).json()["code"] == "four_eyes"
    approved = vote(api.as_sub("second_approver"), run_id, gate_id)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"


def test_with_actor_and_key_the_creating_key_never_votes_whatever_its_sub(api, other_key,
                                                                         pt004):
    strict(pt004)
    run_id = create_run(api)
    gate_id = request_gate(api, run_id)
    refused = vote(api.as_sub("second_approver"), run_id, gate_id)
    assert refused.status_code == 403 and refused.json()["code"] == "four_eyes"
    assert "key" in refused.json()["detail"]
    approved = vote(other_key, run_id, gate_id)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"


def test_with_actor_and_key_the_requesting_key_never_votes(api, other_key, pt004):
    strict(pt004)
    run_id = create_run(api)
    gate_id = request_gate(other_key, run_id)  # another key asks for the gate
    for key in (other_key.as_sub("someone-else"), api.as_sub("second_approver")):
        refused = vote(key, run_id, gate_id)
        assert refused.status_code == 403 and refused.json()["code"] == "four_eyes"
    third, secret = api_client_create(tenant=pt004, name="third", actor="system:test",
                                      scopes=["gates:resolve"])
    voter = Api(api.http, third.kid, secret, pt004.slug, api.advance, sub="third",
                scope="gates:resolve")
    assert vote(voter, run_id, gate_id).json()["status"] == "approved"


def test_with_actor_and_key_the_actor_rule_still_holds(api, other_key, pt004):
    strict(pt004)
    run_id = create_run(api)
    gate_id = request_gate(api, run_id)
    refused = vote(other_key.as_sub("harness"), run_id, gate_id)  # same actor, other key
    assert refused.status_code == 403 and refused.json()["code"] == "four_eyes"


def test_the_tenant_setting_takes_only_known_modes(pt004):
    pt004.settings = {"four_eyes": "actor_and_keys"}
    with pytest.raises(ValidationError, match="four_eyes must be one of actor, actor_and_key"):
        pt004.full_clean()
    assert pt004.four_eyes == "actor_and_key"  # an unknown value reads as the stricter


def test_the_chain_records_which_key_created_requested_and_voted(api, other_key):
    """So an evidence pack shows the credentials, not only the actors they named."""
    from audit.models import AuditEvent

    run_id = create_run(api)
    gate_id = request_gate(api, run_id)
    assert vote(other_key, run_id, gate_id).status_code == 200
    events = {e.code: e.data for e in AuditEvent.objects.filter(stream__name=f"run/{run_id}")
              if e.code in ("FC-RUN-001", "FC-GATE-001", "FC-GATE-002")}
    assert (events["FC-RUN-001"]["key"], events["FC-GATE-001"]["requested_by_key"],
            events["FC-GATE-002"]["key"]) == (api.kid, api.kid, other_key.kid)
    pack = api.get(f"{RUNS}/{run_id}/evidence").json()
    assert [e["data"].get("key") for e in pack["events"] if e["code"] == "FC-GATE-002"] == \
        [other_key.kid]
