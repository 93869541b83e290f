"""Token subjects: validated, compared exactly, and limited per key by `allowed_subs`."""

import json

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from audit.services import admin_stream_name
from fcore.clients import api_client_create
from fcore.models import ApiClient
from tests.conftest import ALL_SCOPES

pytestmark = pytest.mark.django_db
RUNS = "/workflows/runs"


def open_gate(api) -> tuple[str, int]:
    run = api.post(RUNS, {"workflow": "pt004_execution_spine", "input": {"amount": 10}})
    assert run.status_code == 201, run.json()
    run_id = run.json()["run_id"]
    gate = api.post(f"{RUNS}/{run_id}/gates", {"reason": "check"})
    assert gate.status_code == 201, gate.json()
    return run_id, gate.json()["gate_id"]


def assert_bad_sub(response, words="subject (sub)"):
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "authentication_failed"
    assert words in response.json()["detail"]


def test_a_sub_with_a_trailing_space_cannot_approve_the_gate_of_the_sub_without(api):
    maker = api.as_sub("maker")
    run_id, gate_id = open_gate(maker)
    vote = maker.as_sub("maker ").patch(f"{RUNS}/{run_id}/gates/{gate_id}",
                                        {"decision": "approve"})
    assert_bad_sub(vote)
    assert maker.get(f"{RUNS}/{run_id}/gates/{gate_id}").json()["status"] == "open"


@pytest.mark.parametrize("sub", [
    " maker", "maker ", "maker\n", "ma\x00ker", "ma\tker", "-maker", "", " ", "mäker",
    "a" * 194,
])
def test_invalid_subs_are_refused(api, sub):
    assert_bad_sub(api.as_sub(sub).get(RUNS))


def test_a_300_character_sub_is_refused_not_stored(api):
    response = api.as_sub("a" * 300).post(RUNS, {"workflow": "pt004_execution_spine"})
    assert_bad_sub(response, "longer than 193 characters")


@pytest.mark.parametrize("sub", ["harness", "pt004_test_harness", "executor-1",
                                 "svc.payments@eu/worker:7", "a" * 193])
def test_valid_subs_are_accepted(api, sub):
    response = api.as_sub(sub).post(RUNS, {"workflow": "pt004_execution_spine"})
    assert response.status_code == 201, response.content
    assert response.json()["created_by"] == f"client:{sub}"


@pytest.fixture
def limited(api, pt004):
    client, secret = api_client_create(tenant=pt004, name="executor", actor="system:test",
                                       scopes=ALL_SCOPES.split(),
                                       allowed_subs=["executor", "executor-2"])
    return api.as_sub("executor").__class__(api.http, client.kid, secret, pt004.slug,
                                            api.advance, sub="executor")


def test_a_client_limited_to_subs_cannot_act_as_another(limited):
    assert limited.get(RUNS).status_code == 200
    assert limited.as_sub("executor-2").get(RUNS).status_code == 200
    assert_bad_sub(limited.as_sub("approver").get(RUNS), "allowed_subs")


def test_a_limited_client_cannot_approve_its_own_gate_as_another_sub(limited):
    run_id, gate_id = open_gate(limited)
    vote = limited.as_sub("approver").patch(f"{RUNS}/{run_id}/gates/{gate_id}",
                                            {"decision": "approve"})
    assert_bad_sub(vote, "allowed_subs")


def test_create_api_client_takes_allowed_subs_and_audits_them(pt004, capsys):
    call_command("create_api_client", "--tenant", "tenant_omega", "--name", "bot",
                 "--scopes", "runs:read", "--allowed-subs", "bot-2, bot-1")
    printed = json.loads(capsys.readouterr().out)
    client = ApiClient.objects.get(kid=printed["kid"])
    assert client.allowed_subs == ["bot-1", "bot-2"]
    event = AuditEvent.objects.get(stream__name=admin_stream_name("tenant_omega"),
                                   code="FC-ADM-003")
    assert event.data["allowed_subs"] == ["bot-1", "bot-2"]


def test_create_api_client_refuses_an_invalid_allowed_sub(pt004):
    with pytest.raises(CommandError, match="allowed sub 'bad sub' is not valid"):
        call_command("create_api_client", "--tenant", "tenant_omega", "--name", "bot",
                     "--scopes", "runs:read", "--allowed-subs", "ok,bad sub")
    assert not ApiClient.objects.exists()


def admin_form(client: ApiClient, **changes) -> dict:
    form = {"tenant": client.tenant_id, "name": client.name, "scopes": client.scopes,
            "allowed_subs": json.dumps(client.allowed_subs), "active": "on"}
    return {**form, **changes}


def test_admin_sets_allowed_subs_and_audits_the_change(api, admin_client):
    client = ApiClient.objects.get(kid=api.kid)
    response = admin_client.post(f"/admin/fcore/apiclient/{client.pk}/change/",
                                 admin_form(client, allowed_subs='["harness"]'))
    assert response.status_code == 302, response.content.decode()[:2000]
    client.refresh_from_db()
    assert client.allowed_subs == ["harness"] and client.active
    event = AuditEvent.objects.filter(code="FC-ADM-003").order_by("-id").first()
    assert event.data["action"] == "changed" and event.message == "API client 'harness' changed"
    assert event.data["allowed_subs"] == ["harness"] and event.data["allowed_subs_before"] == []
    assert api.get(RUNS).status_code == 200
    assert_bad_sub(api.as_sub("second_approver").get(RUNS), "allowed_subs")


def test_admin_refuses_an_invalid_allowed_sub(api, admin_client):
    client = ApiClient.objects.get(kid=api.kid)
    response = admin_client.post(f"/admin/fcore/apiclient/{client.pk}/change/",
                                 admin_form(client, allowed_subs='["ok", "not ok"]'))
    assert response.status_code == 200 and "is not valid" in response.content.decode()
    client.refresh_from_db()
    assert client.allowed_subs == []


def test_admin_creates_a_client_with_allowed_subs(pt004, admin_client):
    response = admin_client.post("/admin/fcore/apiclient/add/", {
        "tenant": pt004.pk, "name": "bot", "scopes": "runs:read",
        "allowed_subs": '["bot"]', "active": "on"})
    assert response.status_code == 200  # the page that shows the secret once
    client = ApiClient.objects.get(name="bot")
    assert client.kid in response.content.decode()
    assert client.allowed_subs == ["bot"]
    event = AuditEvent.objects.get(code="FC-ADM-003", data__kid=client.kid)
    assert event.data["allowed_subs"] == ["bot"]
