"""The approval console: queue, voting without and with htmx, four-eyes, run pages.

Celery runs eagerly (tests/conftest.py, or FCORE_CELERY_EAGER=1): a run created inside
`django_capture_on_commit_callbacks(execute=True)` advances to its gate.
"""

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.messages import get_messages
from django.test import Client

from fcore.members import member_set
from fcore.models import Tenant
from gates.models import Gate, GateStatus
from runs.bundles import bundle_load
from runs.models import RunStatus
from runs.services import run_create

PASSWORD = "console-test-pass"
DEMO = Path(settings.BASE_DIR) / "docs" / "examples" / "demo.yaml"
HTMX = {"HTTP_HX_REQUEST": "true"}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenant():
    bundle_load(yaml.safe_load(DEMO.read_text()), actor="system:test")
    tenant = Tenant.objects.get(slug="tenant_omega")
    for username, groups in [("olivia", ["operators"]), ("adam", ["approvers"]),
                             ("amira", ["approvers"]), ("otto", ["operators", "approvers"]),
                             ("priya", ["policy-admins"])]:
        member_set(tenant=tenant, username=username, groups=groups, password=PASSWORD)
    return tenant


@pytest.fixture
def other_tenant():
    tenant = Tenant.objects.create(slug="tenant_other", name="Other")
    member_set(tenant=tenant, username="oscar", groups=["approvers", "operators"],
               password=PASSWORD)
    return tenant


@pytest.fixture
def make_run(django_capture_on_commit_callbacks):
    def make(tenant, actor="user:olivia", amount=10):
        with django_capture_on_commit_callbacks(execute=True):
            run, _ = run_create(tenant=tenant, workflow="vendor_payment",
                                input={"amount": amount}, actor=actor)
        run.refresh_from_db()
        return run

    return make


def login(username) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def open_gate(run) -> Gate:
    return Gate.objects.get(run=run, status=GateStatus.OPEN)


def flash(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def decide_url(gate) -> str:
    return f"/console/gates/{gate.id}/decide"


def test_pages_need_sign_in(client):
    for url in ("/console/", "/console/runs/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/console/login/?next=")


def test_an_htmx_poll_without_a_session_redirects_the_whole_page(client):
    response = client.get("/console/", **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/console/login/")


def test_login_page_and_sign_in(client, tenant):
    page = client.get("/console/login/")
    assert page.status_code == 200
    assert b'<label for="id_username">' in page.content
    response = client.post("/console/login/", {"username": "adam", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/console/"


def test_logout_is_a_post(tenant):
    client = login("adam")
    assert client.get("/console/logout/").status_code == 405
    response = client.post("/console/logout/")
    assert response.status_code == 302
    assert client.get("/console/").status_code == 302


def test_a_person_without_membership_gets_a_clear_page(django_user_model):
    django_user_model.objects.create_user("nomad", password=PASSWORD)
    response = login("nomad").get("/console/")
    assert response.status_code == 403
    assert b"not a member of any tenant" in response.content


def test_queue_shows_an_open_gate_to_an_approver(tenant, make_run):
    run = make_run(tenant)
    assert run.status == RunStatus.PAUSED
    gate = open_gate(run)
    response = login("adam").get("/console/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="gate-{gate.id}"' in body
    assert "vendor_payment" in body and "sign_off" in body
    assert f'href="/console/runs/{run.run_id}/"' in body
    assert "0 of 2 approvals" in body
    assert "<title>(1) Approval queue" in body
    assert 'hx-trigger="every 3s"' in body
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_queue_hides_gates_of_other_groups_and_tenants(tenant, other_tenant, make_run):
    gate = open_gate(make_run(tenant))
    for username in ("olivia", "priya", "oscar"):
        body = login(username).get("/console/").content.decode()
        assert f'id="gate-{gate.id}"' not in body, username
        assert "No open gates are waiting for you." in body


def test_htmx_poll_gets_only_the_partial(tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("adam").get("/console/", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and "<nav" not in body
    assert body.lstrip().startswith("<title>(1) Approval queue")
    assert 'id="gate-queue"' in body and f'id="gate-{gate.id}"' in body
    assert "HX-Request" in response["Vary"]


def test_history_restore_gets_the_full_page(tenant, make_run):
    make_run(tenant)
    response = login("adam").get("/console/", HTTP_HX_REQUEST="true",
                                 HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    body = response.content.decode()
    assert "<html" in body and "<nav" in body and 'id="gate-queue"' in body


def test_approve_with_a_plain_post(tenant, make_run, django_capture_on_commit_callbacks):
    run = make_run(tenant)
    gate = open_gate(run)
    response = login("adam").post(decide_url(gate), {"decision": "approve", "comment": "ok"})
    assert response.status_code == 302 and response["Location"] == "/console/"
    assert "1 of 2 approvals" in " ".join(flash(response))
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN
    # adam has voted: his row says so and offers no form any more
    body = login("adam").get("/console/").content.decode()
    assert "You voted to approve" in body and "1 of 2 approvals" in body
    with django_capture_on_commit_callbacks(execute=True):
        response = login("amira").post(decide_url(gate), {"decision": "approve"}, follow=True)
    assert "approved: the run continues" in response.content.decode()
    gate.refresh_from_db()
    run.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert run.status == RunStatus.RUNNING and run.current_step == "pay"


def test_a_second_vote_by_the_same_person_is_refused(tenant, make_run):
    gate = open_gate(make_run(tenant))
    client = login("adam")
    client.post(decide_url(gate), {"decision": "approve"}, follow=True)
    response = client.post(decide_url(gate), {"decision": "approve"})
    assert flash(response) == ["You have already voted on this gate."]


def test_reject_without_a_comment_is_refused(tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("adam").post(decide_url(gate), {"decision": "reject", "comment": "  "})
    assert response.status_code == 302
    assert flash(response) == ["A comment is required to reject a gate."]
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


def test_reject_with_a_comment_fails_the_run(tenant, make_run):
    run = make_run(tenant)
    gate = open_gate(run)
    response = login("adam").post(decide_url(gate),
                                  {"decision": "reject", "comment": "wrong vendor"})
    assert "rejected" in " ".join(flash(response))
    gate.refresh_from_db()
    run.refresh_from_db()
    assert gate.status == GateStatus.REJECTED and run.status == RunStatus.FAILED


def test_a_vote_on_a_closed_gate_is_a_message_not_an_error(tenant, make_run):
    gate = open_gate(make_run(tenant))
    login("adam").post(decide_url(gate), {"decision": "reject", "comment": "no"})
    response = login("amira").post(decide_url(gate), {"decision": "approve"})
    assert response.status_code == 302
    assert flash(response) == ["This gate is no longer open: it is rejected."]


def test_htmx_vote_swaps_the_queue_and_sends_the_message_out_of_band(tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("adam").post(decide_url(gate), {"decision": "approve"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="gate-queue"' in body
    assert 'id="messages"' in body and 'hx-swap-oob="true"' in body
    assert "1 of 2 approvals" in body and "You voted to approve" in body


def test_the_run_creator_sees_four_eyes_and_cannot_vote(tenant, make_run):
    run = make_run(tenant, actor="user:otto")  # otto is an operator and an approver
    gate = open_gate(run)
    client = login("otto")
    body = client.get("/console/").content.decode()
    assert "You requested this run; another approver must decide" in body
    row = body[body.index(f'id="gate-{gate.id}"'):]
    row = row[:row.index("</li>")]
    assert row.count("disabled") >= 3  # the comment box and both buttons
    assert 'value="approve" class="button approve" disabled' in row
    response = client.post(decide_url(gate), {"decision": "approve"})
    assert flash(response) == ["You requested this run; another approver must decide."]
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and not gate.approvals.exists()


def test_a_non_approver_vote_is_refused(tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("priya").post(decide_url(gate), {"decision": "approve"})
    assert flash(response) == ["Only members of 'approvers' may vote on this gate."]


def test_another_tenants_gate_is_not_found(tenant, other_tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("oscar").post(decide_url(gate), {"decision": "approve"})
    assert response.status_code == 404  # the same answer as an unknown gate
    gate.refresh_from_db()
    assert not gate.approvals.exists()


def test_csrf_is_enforced(tenant, make_run):
    gate = open_gate(make_run(tenant))
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="adam", password=PASSWORD)
    response = client.post(decide_url(gate), {"decision": "approve"})
    assert response.status_code == 403
    assert not gate.approvals.exists()
    page = client.get("/console/")
    token = str(page.context["csrf_token"])
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in page.content.decode()
    response = client.post(decide_url(gate), {"decision": "approve"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302
    assert gate.approvals.count() == 1


def test_decide_is_post_only(tenant, make_run):
    gate = open_gate(make_run(tenant))
    assert login("adam").get(decide_url(gate)).status_code == 405


def test_run_page(tenant, make_run):
    run = make_run(tenant)
    gate = open_gate(run)
    login("adam").post(decide_url(gate), {"decision": "approve", "comment": "looks right"})
    response = login("amira").get(f"/console/runs/{run.run_id}/")
    body = response.content.decode()
    assert response.status_code == 200
    for text in ("validate", "sign_off", "pay", "Policy decisions", "looks right",
                 "user:adam", "FC-RUN-001", "FC-GATE-002", "Vote recorded on gate: approve",
                 "1 of 2 approvals", f"/console/gates/{gate.id}/decide",
                 f'name="next" value="/console/runs/{run.run_id}/"'):
        assert text in body, text


def test_run_page_vote_returns_to_the_run(tenant, make_run):
    run = make_run(tenant)
    gate = open_gate(run)
    url = f"/console/runs/{run.run_id}/"
    response = login("adam").post(decide_url(gate), {"decision": "approve", "next": url})
    assert response["Location"] == url
    response = login("amira").post(decide_url(gate),
                                   {"decision": "approve", "next": "https://evil.example/"})
    assert response["Location"] == "/console/"


def test_another_tenants_run_is_not_found(tenant, other_tenant, make_run):
    run = make_run(tenant)
    response = login("oscar").get(f"/console/runs/{run.run_id}/")
    assert response.status_code == 404
    assert b"There is no such run" in response.content
    assert login("oscar").get("/console/runs/not-a-uuid/").status_code == 404


def test_run_list_filters_by_status(tenant, make_run):
    paused = make_run(tenant)
    client = login("olivia")
    body = client.get("/console/runs/").content.decode()
    assert str(paused.run_id) in body
    assert str(paused.run_id) in client.get("/console/runs/?status=paused").content.decode()
    body = client.get("/console/runs/?status=completed").content.decode()
    assert str(paused.run_id) not in body and "No runs with status completed" in body
    assert client.get("/console/runs/?status=bogus").status_code == 200
