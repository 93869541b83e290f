"""Reviewing a break-glass override: the service, the API, the console and the evidence pack.

An override marks its gate `needs_review`; someone else holding `gates.review_override`
clears it with a note (`FC-GATE-006` on the run's stream, also after the run has ended).
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.verify import audit_verify
from audit.verify_pack import Failure, verify_pack
from fcore.errors import BadRequest, Conflict, Forbidden, FourEyes
from fcore.members import member_set
from gates.models import OVERRIDE_PERMISSION, REVIEW_PERMISSION, Gate, GateStatus
from runs.models import Run, RunStatus
from runs.services import run_create, run_gate_override, run_gate_override_review
from tests.conftest import person

pytestmark = pytest.mark.django_db

PASSWORD = "review-test-pass"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(pt004):
    """olivia starts runs; otto may break glass and review; rita may review; adam neither."""
    for username, groups in [("olivia", ["operators"]), ("adam", ["approvers"]),
                             ("otto", ["operators", "approvers"]), ("rita", ["auditors"])]:
        member_set(tenant=pt004, username=username, groups=groups, password=PASSWORD)
    users = get_user_model().objects
    for codename, usernames in [("override_gate", ["otto"]),
                                ("review_override", ["otto", "rita"])]:
        permission = Permission.objects.get(codename=codename, content_type__app_label="gates")
        for user in users.filter(username__in=usernames):
            user.user_permissions.add(permission)
    return pt004


@pytest.fixture
def overridden(people, advance):
    """A vendor_payment run whose gate otto forced through; the run went on."""
    with advance():
        run, _ = run_create(tenant=people, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 1200, "vendor": "v-1"})
    gate = Gate.objects.get(run=run)
    with advance():
        run_gate_override(tenant=people, run_id=run.run_id, gate_id=gate.id,
                          actor="user:otto", justification="bank cut-off",
                          user=person("otto-acting", OVERRIDE_PERMISSION))
    gate.refresh_from_db()
    assert gate.needs_review
    return Run.objects.get(pk=run.pk), gate


def review(run, gate, *, actor="user:rita", note="checked with finance", permitted=True):
    user = person(f"{actor}-acting", *([REVIEW_PERMISSION] if permitted else []))
    return run_gate_override_review(tenant=run.tenant, run_id=run.run_id, gate_id=gate.id,
                                    actor=actor, note=note, user=user)


def reviews(run) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(stream__name=run.stream_name, code="FC-GATE-006"))


def test_a_review_clears_needs_review_and_records_fc_gate_006(overridden):
    run, gate = overridden
    review(run, gate)
    gate.refresh_from_db()
    assert gate.needs_review is False and gate.status == GateStatus.OVERRIDDEN
    assert gate.reviewed_by == "user:rita" and gate.reviewed_at is not None
    assert gate.review_note == "checked with finance"
    assert gate.resolution["justification"] == "bank cut-off"  # the override stays as it was
    (event,) = reviews(run)
    assert event.actor == "user:rita"
    assert event.data == {"gate_id": gate.id, "status": "overridden",
                          "overridden_by": "user:otto", "note": "checked with finance"}
    assert event.message == f"Override of gate {gate.id} reviewed"
    report = audit_verify(tenant_ids=[run.tenant_id])
    assert report.ok and report.events > 0, report.failures


def test_an_ended_run_can_still_be_reviewed_and_its_receipts_verify(overridden, api):
    run, gate = overridden
    api.patch(f"/workflows/runs/{run.run_id}/status", {"status": "cancelled", "reason": "x"})
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    review(Run.objects.get(pk=run.pk), gate)
    receipt = api.get(f"/workflows/runs/{run.run_id}/receipt").json()
    assert receipt["verified"] is True, receipt["failures"]
    pack = api.get(f"/workflows/runs/{run.run_id}/evidence").json()
    verify_pack(pack)
    (packed,) = [g for g in pack["gates"] if g["gate_id"] == gate.id]
    assert packed["reviewed_by"] == "user:rita" and packed["needs_review"] is False


def test_the_verifier_wants_an_event_for_a_review_the_pack_claims(overridden, api):
    run, gate = overridden
    pack = api.get(f"/workflows/runs/{run.run_id}/evidence").json()
    (packed,) = [g for g in pack["gates"] if g["gate_id"] == gate.id]
    packed["reviewed_by"], packed["review_note"] = "user:rita", "looks fine"
    with pytest.raises(Failure) as caught:
        verify_pack(pack)
    assert "reviewed_by: is set, but no FC-GATE-006 event records a review of this gate" in \
        str(caught.value)


def test_the_one_who_overrode_cannot_review(overridden):
    run, gate = overridden
    with pytest.raises(FourEyes):
        review(run, gate, actor="user:otto")
    gate.refresh_from_db()
    assert gate.needs_review and reviews(run) == []


@pytest.mark.parametrize(("kwargs", "error", "code"), [
    ({"permitted": False}, Forbidden, "forbidden"),
    ({"note": "   "}, BadRequest, "invalid"),
    ({"note": "x" * 4001}, BadRequest, "invalid"),
])
def test_refusals_change_nothing(overridden, kwargs, error, code):
    run, gate = overridden
    with pytest.raises(error) as info:
        review(run, gate, **kwargs)
    assert info.value.code == code
    gate.refresh_from_db()
    assert gate.needs_review and gate.reviewed_by == "" and reviews(run) == []


def test_a_gate_is_reviewed_once_and_only_after_an_override(overridden, advance, people):
    run, gate = overridden
    review(run, gate)
    with pytest.raises(Conflict) as info:
        review(run, gate, actor="user:otto-2")
    assert (info.value.code, info.value.context["reviewed_by"]) == ("already_reviewed",
                                                                    "user:rita")
    with advance():
        other, _ = run_create(tenant=people, workflow="vendor_payment", actor="user:olivia",
                              input={"amount": 1200, "vendor": "v-2"})
    open_gate = Gate.objects.get(run=other)
    with pytest.raises(Conflict) as info:
        review(other, open_gate)
    assert (info.value.code, info.value.context["current"]) == ("not_overridden", "open")
    assert len(reviews(run)) == 1 and reviews(other) == []


# --- the API -------------------------------------------------------------------------------

def session(username) -> APIClient:
    client = APIClient()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def test_api_review(overridden, api):
    run, gate = overridden
    path = f"/workflows/runs/{run.run_id}/gates/{gate.id}/override/review"
    assert api.post(path, {"note": "bot"}).status_code == 403  # machines never review
    assert session("adam").post(path, {"note": "x"}, format="json").json()["code"] == \
        "forbidden"
    own = session("otto").post(path, {"note": "mine"}, format="json")
    assert (own.status_code, own.json()["code"]) == (403, "four_eyes")
    blank = session("rita").post(path, {"note": ""}, format="json")
    assert (blank.status_code, blank.json()["errors"]) == (400, {"note": ["required"]})
    garbage = session("rita").post(path, "{nope", content_type="application/json")
    assert garbage.status_code == 400 and garbage.json()["code"] == "malformed_request"
    assert APIClient().post(path, {"note": "x"}, format="json").status_code == 401
    done = session("rita").post(path, {"note": "ok"}, format="json")
    assert done.status_code == 200, done.json()
    body = done.json()
    assert (body["needs_review"], body["reviewed_by"], body["review_note"]) == (
        False, "user:rita", "ok")
    again = session("rita").post(path, {"note": "ok"}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "already_reviewed")
    assert len(reviews(run)) == 1


def test_api_review_of_another_tenants_gate_is_not_found(overridden, other_tenant):
    run, gate = overridden
    member_set(tenant=other_tenant, username="sam", groups=["auditors"], password=PASSWORD)
    sam = get_user_model().objects.get(username="sam")
    sam.user_permissions.add(Permission.objects.get(codename="review_override"))
    response = session("sam").post(
        f"/workflows/runs/{run.run_id}/gates/{gate.id}/override/review", {"note": "x"},
        format="json")
    assert response.status_code == 404
    assert reviews(run) == []


# --- the console ---------------------------------------------------------------------------

def login(username) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_console_offers_the_review_to_reviewers_but_not_to_the_overrider(overridden):
    run, gate = overridden
    action = f'action="/console/gates/{gate.id}/override/review"'
    assert action in login("rita").get("/console/").content.decode()
    assert action in login("rita").get(f"/console/runs/{run.run_id}/").content.decode()
    assert action not in login("otto").get("/console/").content.decode()
    assert action not in login("adam").get(f"/console/runs/{run.run_id}/").content.decode()


def test_console_review_clears_the_queue_entry(overridden):
    run, gate = overridden
    rita = login("rita")
    response = rita.post(f"/console/gates/{gate.id}/override/review",
                         {"note": "confirmed by phone", "next": "/console/"}, follow=True)
    body = response.content.decode()
    assert f"Override of gate {gate.id} marked reviewed." in body
    assert f'id="review-gate-{gate.id}"' not in body
    page = rita.get(f"/console/runs/{run.run_id}/").content.decode()
    assert "confirmed by phone" in page and "Overridden — needs review" not in page
    assert [e.actor for e in reviews(run)] == ["user:rita"]


def test_console_review_refusals_are_messages(overridden):
    run, gate = overridden
    for username, note, text in [("rita", "  ", "A note is required"),
                                 ("adam", "fine", "needs the gates.review_override permission"),
                                 ("otto", "fine", "cannot review the override")]:
        response = login(username).post(f"/console/gates/{gate.id}/override/review",
                                        {"note": note}, follow=True)
        assert text in response.content.decode()
    gate.refresh_from_db()
    assert gate.needs_review and reviews(run) == []
