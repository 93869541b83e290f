"""Bulk decisions: one form for the ticked gates, one vote per gate through
`run_gate_vote`, each in its own transaction, and a per-gate report."""

from unittest import mock

import pytest
from django.test import Client

from gates.models import GateStatus
from runs import services as run_services
from runs.models import RunStatus
from tests.gates import test_console as base
from tests.gates.test_console import HTMX, PASSWORD, flash, login, open_gate

pytestmark = pytest.mark.django_db
tenant, make_run, fast_passwords = base.tenant, base.make_run, base.fast_passwords
other_tenant = base.other_tenant
BULK = "/console/gates/bulk"


def test_the_queue_offers_checkboxes_tied_to_one_bulk_form(tenant, make_run):
    gate = open_gate(make_run(tenant))
    mine = open_gate(make_run(tenant, actor="user:otto"))  # otto may not decide his own
    adam = login("adam").get("/console/").content.decode()
    assert '<form method="post" action="/console/gates/bulk" id="bulk-form"' in adam
    assert (f'<input type="checkbox" name="gates" value="{gate.id}" form="bulk-form" '
            f'id="pick-{gate.id}" hx-preserve>') in adam
    assert f'<label for="pick-{gate.id}"' in adam
    assert '<label for="bulk-comment">' in adam
    otto = login("otto").get("/console/").content.decode()
    assert f'id="pick-{mine.id}"' not in otto and f'id="pick-{gate.id}"' in otto


def test_bulk_approve_records_one_vote_per_gate(tenant, make_run):
    gates = [open_gate(make_run(tenant)) for _ in range(3)]
    with mock.patch("fcore.interfaces.console.bulk.run_gate_vote",
                    wraps=run_services.run_gate_vote) as spy:
        response = login("adam").post(BULK, {"gates": [g.id for g in gates],
                                             "decision": "approve", "comment": "batch ok",
                                             "next": "/console/?sort=age"})
    assert response.status_code == 302 and response["Location"] == "/console/?sort=age"
    assert spy.call_count == 3
    assert {c.kwargs["gate_id"] for c in spy.call_args_list} == {g.id for g in gates}
    assert flash(response) == ["3 approved."]
    for gate in gates:
        vote = gate.approvals.get()
        assert (vote.actor, vote.decision, vote.comment) == ("user:adam", "approve", "batch ok")


def test_bulk_reports_refusals_per_gate_and_keeps_the_rest(tenant, make_run,
                                                           django_capture_on_commit_callbacks):
    ok = [open_gate(make_run(tenant)) for _ in range(3)]
    own = open_gate(make_run(tenant, actor="user:otto"))  # four-eyes for otto
    ids = [g.id for g in ok] + [own.id, 999999]
    with django_capture_on_commit_callbacks(execute=True):
        response = login("otto").post(BULK, {"gates": ids, "decision": "approve"})
    assert flash(response) == [
        f"3 approved, 1 refused: four_eyes (gate {own.id}), "
        "1 refused: not_found (gate 999999)."]
    assert all(g.approvals.filter(actor="user:otto").exists() for g in ok)
    assert not own.approvals.exists()


def test_bulk_approve_resolves_gates_that_reach_quorum(tenant, make_run,
                                                       django_capture_on_commit_callbacks):
    runs = [make_run(tenant) for _ in range(2)]
    gates = [open_gate(r) for r in runs]
    login("adam").post(BULK, {"gates": [g.id for g in gates], "decision": "approve"})
    with django_capture_on_commit_callbacks(execute=True):
        response = login("amira").post(BULK, {"gates": [g.id for g in gates],
                                              "decision": "approve"})
    assert flash(response) == ["2 approved; 2 resolved."]
    for gate, run in zip(gates, runs, strict=True):
        gate.refresh_from_db()
        run.refresh_from_db()
        assert gate.status == GateStatus.APPROVED and run.status == RunStatus.RUNNING


def test_bulk_reject_needs_a_comment_and_fails_the_runs(tenant, make_run):
    runs = [make_run(tenant) for _ in range(2)]
    gates = [open_gate(r) for r in runs]
    client = login("adam")
    response = client.post(BULK, {"gates": [g.id for g in gates], "decision": "reject"})
    assert flash(response) == ["A comment is required to reject gates."]
    assert not any(g.approvals.exists() for g in gates)
    response = login("adam").post(BULK, {"gates": [g.id for g in gates], "decision": "reject",
                                         "comment": "duplicate invoices"})
    assert flash(response) == ["2 rejected; 2 resolved."]
    for gate, run in zip(gates, runs, strict=True):
        gate.refresh_from_db()
        run.refresh_from_db()
        assert gate.status == GateStatus.REJECTED and run.status == RunStatus.FAILED


def test_bulk_without_a_selection_or_with_junk_is_a_message(tenant):
    assert flash(login("adam").post(BULK, {"decision": "approve"})) == [
        "Select at least one gate."]
    assert flash(login("adam").post(BULK, {"gates": ["x"], "decision": "approve"})) == [
        "Gate ids are numbers."]
    assert login("adam").get(BULK).status_code == 405


def test_bulk_with_htmx_answers_the_queue_partial(tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("adam").post(BULK, {"gates": [gate.id], "decision": "approve"}, **HTMX,
                                  HTTP_HX_CURRENT_URL="http://testserver/console/?sort=age")
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert 'hx-swap-oob="true"' in body and "1 approved." in body
    assert 'hx-get="/console/?sort=age"' in body and "You voted to approve" in body


def test_another_tenants_gates_are_not_found_in_bulk(tenant, other_tenant, make_run):
    gate = open_gate(make_run(tenant))
    response = login("oscar").post(BULK, {"gates": [gate.id], "decision": "approve"})
    assert flash(response) == [f"1 refused: not_found (gate {gate.id})."]
    assert not gate.approvals.exists()


def test_bulk_needs_csrf(tenant, make_run):
    gate = open_gate(make_run(tenant))
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="adam", password=PASSWORD)
    assert client.post(BULK, {"gates": [gate.id], "decision": "approve"}).status_code == 403
    assert not gate.approvals.exists()
