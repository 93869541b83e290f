"""Break-glass override (PT-005 item 7): the service, the API and the console."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from fcore.errors import BadRequest, Forbidden, InvalidTransition
from fcore.members import member_set
from fcore.models import Tenant
from gates.models import OVERRIDE_PERMISSION, Gate, GateStatus
from gates.services import Voter
from runs.models import Run, RunStatus, StepRun
from runs.services import run_create, run_gate_override, run_gate_vote
from tests.conftest import person

pytestmark = pytest.mark.django_db

PASSWORD = "override-test-pass"
ADAM = Voter(actor="user:adam", groups=frozenset({"approvers"}))


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(pt004):
    """olivia starts runs; adam approves; otto approves and may break glass; bea may break
    glass but is in no gate group; a machine client is in `api`."""
    for username, groups in [("olivia", ["operators"]), ("adam", ["approvers"]),
                             ("otto", ["operators", "approvers"]), ("bea", ["auditors"])]:
        member_set(tenant=pt004, username=username, groups=groups, password=PASSWORD)
    permission = Permission.objects.get(codename="override_gate", content_type__app_label="gates")
    for membership in pt004.memberships.filter(user__username__in=["otto", "bea"]):
        membership.user.user_permissions.add(permission)
    return pt004


@pytest.fixture
def payment(people, advance):
    """A vendor_payment run by olivia, paused at its two-person gate, adam has approved."""
    with advance():
        run, _ = run_create(tenant=people, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 1200, "vendor": "v-1"})
    gate = Gate.objects.get(run=run)
    with advance():
        run_gate_vote(tenant=people, run_id=run.run_id, gate_id=gate.id, voter=ADAM,
                      decision="approve", comment="fine by me")
    return Run.objects.get(pk=run.pk), gate


def override(run, gate, advance, *, actor="user:otto", justification="bank cut-off at 17:00",
             permitted=True):
    user = person(f"{actor}-acting", *([OVERRIDE_PERMISSION] if permitted else []))
    with advance():
        return run_gate_override(tenant=Tenant.objects.get(pk=run.tenant_id),
                                 run_id=run.run_id, gate_id=gate.id, actor=actor,
                                 justification=justification, user=user)


def gate_events(run, code):
    return list(AuditEvent.objects.filter(stream__name=run.stream_name, code=code)
                .order_by("seq"))


# --- the service ---------------------------------------------------------------------------

def test_override_resolves_the_gate_records_fc_gate_005_and_moves_the_run(payment, advance):
    run, gate = payment
    override(run, gate, advance)
    gate.refresh_from_db()
    assert gate.status == GateStatus.OVERRIDDEN and gate.needs_review is True
    assert gate.resolution["by"] == "user:otto"
    assert gate.resolution["justification"] == "bank cut-off at 17:00"
    assert gate.resolution["votes"] == [{"actor": "user:adam", "decision": "approve",
                                         "comment": "fine by me"}]
    assert gate.resolved_at is not None
    (event,) = gate_events(run, "FC-GATE-005")
    assert event.actor == "user:otto"
    assert event.data == {"gate_id": gate.id, "status": "overridden",
                          "justification": "bank cut-off at 17:00",
                          "votes": [{"actor": "user:adam", "decision": "approve",
                                     "comment": "fine by me"}],
                          "approvals": 1, "required_approvals": 2, "needs_review": True}
    assert event.message == "Gate overridden (break-glass)"
    assert gate_events(run, "FC-GATE-003") == []  # the override is the resolution
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.status_reason == f"gate {gate.id} overridden"
    sign_off = StepRun.objects.get(run=run, step_id="sign_off")
    assert sign_off.status == "succeeded" and sign_off.output["status"] == "overridden"
    assert StepRun.objects.get(run=run, step_id="pay").status == "running"


def test_four_eyes_does_not_apply_to_break_glass(payment, advance):
    run, gate = payment
    override(run, gate, advance, actor="user:olivia")  # she started the run
    gate.refresh_from_db()
    assert gate.status == GateStatus.OVERRIDDEN and gate.resolution["by"] == "user:olivia"


def test_override_without_the_permission_is_forbidden(payment, advance):
    run, gate = payment
    with pytest.raises(Forbidden) as info:
        override(run, gate, advance, permitted=False)
    assert (info.value.status, info.value.code) == (403, "forbidden")
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and gate_events(run, "FC-GATE-005") == []


def test_a_tenant_can_switch_break_glass_off(payment, advance):
    run, gate = payment
    Tenant.objects.filter(pk=run.tenant_id).update(settings={"break_glass": False})
    with pytest.raises(Forbidden) as info:
        override(run, gate, advance)
    assert info.value.code == "break_glass_disabled"
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


@pytest.mark.parametrize("justification", ["", "   ", None])
def test_a_justification_is_required(payment, advance, justification):
    run, gate = payment
    with pytest.raises(BadRequest) as info:
        override(run, gate, advance, justification=justification)
    assert info.value.context["errors"] == {"justification": ["required"]}
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


def test_a_closed_gate_cannot_be_overridden(payment, advance):
    run, gate = payment
    override(run, gate, advance)
    with pytest.raises(InvalidTransition) as info:
        override(run, gate, advance, actor="user:bea")
    assert info.value.context["current"] == "overridden"
    assert len(gate_events(run, "FC-GATE-005")) == 1


# --- the API -------------------------------------------------------------------------------

def session(username) -> APIClient:
    from django.contrib.auth import get_user_model

    client = APIClient()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def api_override(client, run, gate, advance, body):
    with advance():
        return client.post(f"/workflows/runs/{run.run_id}/gates/{gate.id}/override", body,
                           format="json")


def test_api_override_by_a_person_with_the_permission(payment, advance):
    run, gate = payment
    response = api_override(session("otto"), run, gate, advance,
                            {"justification": "incident INC-7"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "overridden" and body["needs_review"] is True
    assert body["resolution"]["justification"] == "incident INC-7"
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_api_override_refusals(payment, advance, api):
    run, gate = payment
    path = f"/workflows/runs/{run.run_id}/gates/{gate.id}/override"
    machine = api.post(path, {"justification": "bot says so"})
    assert machine.status_code == 403 and machine.json()["code"] == "forbidden"
    no_permission = api_override(session("adam"), run, gate, advance, {"justification": "x"})
    assert no_permission.status_code == 403
    assert no_permission.json()["code"] == "forbidden"
    blank = api_override(session("otto"), run, gate, advance, {"justification": "  "})
    assert blank.status_code == 400
    assert blank.json()["errors"] == {"justification": ["required"]}
    missing = api_override(session("otto"), run, gate, advance, {})
    assert missing.status_code == 400 and "justification" in missing.json()["errors"]
    garbage = session("otto").post(path, "{not json", content_type="application/json")
    assert garbage.status_code == 400 and garbage.json()["code"] == "malformed_request"
    unknown = session("otto").post(f"/workflows/runs/{run.run_id}/gates/999999/override",
                                   {"justification": "x"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    bad_id = session("otto").post(f"/workflows/runs/{run.run_id}/gates/abc/override",
                                  {"justification": "x"}, format="json")
    assert bad_id.status_code == 404
    anonymous = APIClient().post(path, {"justification": "x"}, format="json")
    assert anonymous.status_code == 401
    Tenant.objects.filter(pk=run.tenant_id).update(settings={"break_glass": False})
    disabled = api_override(session("otto"), run, gate, advance, {"justification": "x"})
    assert disabled.status_code == 403 and disabled.json()["code"] == "break_glass_disabled"
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


def test_api_override_of_another_tenants_gate_is_not_found(payment, advance, other_tenant):
    run, gate = payment
    member_set(tenant=other_tenant, username="sam", groups=["approvers"], password=PASSWORD)
    from django.contrib.auth import get_user_model

    sam = get_user_model().objects.get(username="sam")
    sam.user_permissions.add(Permission.objects.get(codename="override_gate"))
    response = api_override(session("sam"), run, gate, advance, {"justification": "x"})
    assert response.status_code == 404
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


def test_api_override_of_a_closed_gate_is_a_conflict(payment, advance):
    run, gate = payment
    api_override(session("otto"), run, gate, advance, {"justification": "first"})
    again = api_override(session("bea"), run, gate, advance, {"justification": "second"})
    assert again.status_code == 409
    assert (again.json()["code"], again.json()["current"]) == ("invalid_transition",
                                                              "overridden")


# --- the console ---------------------------------------------------------------------------

def login(username) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_the_run_page_offers_break_glass_only_to_holders_of_the_permission(payment):
    run, gate = payment
    url = f"/console/runs/{run.run_id}/"
    body = login("otto").get(url).content.decode()
    assert "Override (break-glass)" in body
    assert f'action="/console/gates/{gate.id}/override"' in body
    assert 'name="justification"' in body and "required" in body
    assert "Override (break-glass)" not in login("adam").get(url).content.decode()
    Tenant.objects.filter(pk=run.tenant_id).update(settings={"break_glass": False})
    assert "Override (break-glass)" not in login("otto").get(url).content.decode()


def test_console_override_marks_the_gate_for_review(payment, django_capture_on_commit_callbacks):
    run, gate = payment
    url = f"/console/runs/{run.run_id}/"
    with django_capture_on_commit_callbacks(execute=True):
        response = login("otto").post(f"/console/gates/{gate.id}/override",
                                      {"justification": "payroll deadline", "next": url},
                                      follow=True)
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == url
    assert "overridden (break-glass)" in body
    assert "Overridden — needs review" in body and "payroll deadline" in body
    gate.refresh_from_db()
    assert gate.status == GateStatus.OVERRIDDEN and gate.needs_review
    assert "Override (break-glass)" not in body  # the gate is closed now
    queue = login("adam").get("/console/").content.decode()
    assert "Overridden — needs review" in queue
    assert f'id="review-gate-{gate.id}"' in queue and "payroll deadline" in queue
    assert "user:otto" in queue
    partial = login("adam").get("/console/", HTTP_HX_REQUEST="true").content.decode()
    assert f'id="review-gate-{gate.id}"' in partial


def test_console_override_refusals_are_messages(payment):
    run, gate = payment
    for username, body, text in [
        ("otto", {"justification": "  "}, "A justification is required"),
        ("adam", {"justification": "why not"}, "needs the gates.override_gate permission"),
    ]:
        response = login(username).post(f"/console/gates/{gate.id}/override", body,
                                        follow=True)
        assert text in response.content.decode()
    assert login("otto").get(f"/console/gates/{gate.id}/override").status_code == 405
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN
