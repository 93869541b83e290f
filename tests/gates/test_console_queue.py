"""The queue: title count, filters and sorts as GET parameters kept across polling,
countdowns, quorum, what a gate shows (input, decision, rules, votes), input fields from a
gate's schema, and bulk decisions (one vote per gate, per-gate outcomes)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gates.models import Gate, GateStatus, PolicyDecision
from runs.models import RunStatus
from runs.services import run_create, run_request_gate, step_report
from tests.conftest import load_bundle
from tests.gates import test_console as base
from tests.gates.test_console import HTMX, flash, login, open_gate

# the fixtures of the console tests, shared
tenant, make_run, fast_passwords = base.tenant, base.make_run, base.fast_passwords

pytestmark = pytest.mark.django_db


@pytest.fixture
def spine(tenant, django_capture_on_commit_callbacks):
    """Also the PT-004 workflow: a policy flag (tier 2, rule large-amount) at step_2."""
    load_bundle("docs/examples/pt004.yaml")

    def make(amount=25000, actor="user:olivia"):
        with django_capture_on_commit_callbacks(execute=True):
            run, _ = run_create(tenant=tenant, workflow="pt004_execution_spine",
                                input={"amount": amount, "vendor": "acme"}, actor=actor)
        with django_capture_on_commit_callbacks(execute=True):
            step_report(tenant=tenant, run_id=run.run_id, step_id="step_1", actor=actor,
                        status="succeeded", output={})
        run.refresh_from_db()
        assert run.status == RunStatus.PAUSED
        return run

    return make


def gate_ids(body: str, gates) -> list[int]:
    """The given gates in the order the page lists them."""
    found = [(body.index(f'id="gate-{g.id}"'), g.id) for g in gates
             if f'id="gate-{g.id}"' in body]
    return [gid for _, gid in sorted(found)]


def test_a_gate_shows_its_run_input_decision_rules_quorum_and_countdown(spine):
    run = spine()
    gate = open_gate(run)
    body = login("adam").get("/console/").content.decode()
    card = body[body.index(f'id="gate-{gate.id}"'):]
    assert "pt004_execution_spine" in card and "step_2" in card
    assert "<title>(1) Approval queue" in body
    assert "0 of 1 approval" in card and '<progress class="quorum" value="0" max="1"' in card
    assert f'<time datetime="{gate.expires_at.isoformat()}" data-countdown' in card
    assert re.search(r">in 23\W+hours", card)  # the server-rendered fallback
    assert "pt004_spend_review/large-amount" in card
    assert "amount above 10,000 needs approval" in card and "tier 2" in card
    assert '&quot;amount&quot;: 25000' in card and '&quot;vendor&quot;: &quot;acme&quot;' in card
    assert 'src="/static/fcore/console.js"' in body
    assert "<script>" not in body and " style=" not in body  # CSP: nothing inline


def test_a_large_input_is_collapsed(spine):
    gate = open_gate(spine(amount=30000))
    decision = gate.step_run.decisions.get()  # its context's input is what the page shows
    assert decision.context["input"]["amount"] == 30000
    body = login("adam").get("/console/").content.decode()
    assert "<details class=\"step-input\"" not in body  # small input: shown as is
    big = {**decision.context, "input": {"lines": [f"invoice line {i}" for i in range(40)]}}
    PolicyDecision.objects.filter(pk=decision.pk).update(context=big)
    body = login("adam").get("/console/").content.decode()
    assert f'<details class="step-input" id="input-view-{gate.id}"' in body
    assert "invoice line 39" in body


def test_filters_are_get_parameters_kept_for_polling(spine, make_run, tenant):
    flagged = open_gate(spine())
    approval = open_gate(make_run(tenant))
    client = login("adam")
    both = client.get("/console/").content.decode()
    assert set(gate_ids(both, [flagged, approval])) == {flagged.id, approval.id}

    by_workflow = client.get("/console/?workflow=vendor_payment").content.decode()
    assert gate_ids(by_workflow, [flagged, approval]) == [approval.id]
    assert 'hx-get="/console/?workflow=vendor_payment"' in by_workflow
    assert "<title>(2) Approval queue" in by_workflow  # the title counts all open gates
    assert "2 open gates · 1 matches the filters" in by_workflow
    assert '<option value="vendor_payment" selected>' in by_workflow

    by_tier = client.get("/console/?tier=2").content.decode()
    assert gate_ids(by_tier, [flagged, approval]) == [flagged.id]
    by_group = client.get("/console/?group=approvers&tier=3").content.decode()
    assert gate_ids(by_group, [flagged, approval]) == []
    assert "No open gate matches these filters." in by_group

    poll = client.get("/console/?workflow=vendor_payment&sort=age", **HTMX).content.decode()
    assert "<html" not in poll and gate_ids(poll, [flagged, approval]) == [approval.id]
    assert 'hx-get="/console/?workflow=vendor_payment&amp;sort=age"' in poll

    # a stale bookmark (unknown values) still opens the page, unfiltered
    stale = client.get("/console/?workflow=gone&tier=x&age=forever&sort=sideways")
    assert stale.status_code == 200
    assert len(gate_ids(stale.content.decode(), [flagged, approval])) == 2


def test_age_filter_and_sorts(spine, make_run, tenant):
    old = open_gate(make_run(tenant))
    new = open_gate(spine())
    Gate.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2),
                                          expires_at=timezone.now() + timedelta(days=5))
    Gate.objects.filter(pk=new.pk).update(expires_at=timezone.now() + timedelta(hours=2))
    client = login("adam")
    assert gate_ids(client.get("/console/?age=1d").content.decode(), [old, new]) == [old.id]
    assert gate_ids(client.get("/console/?age=1h").content.decode(), [old, new]) == [old.id]
    assert gate_ids(client.get("/console/").content.decode(), [old, new]) == [new.id, old.id]
    by_deadline = client.get("/console/?sort=deadline").content.decode()
    assert gate_ids(by_deadline, [old, new]) == [new.id, old.id]
    assert gate_ids(client.get("/console/?sort=age").content.decode(), [old, new]) == [
        old.id, new.id]
    assert gate_ids(client.get("/console/?sort=newest").content.decode(), [old, new]) == [
        new.id, old.id]


def test_pages_and_a_constant_number_of_queries(spine):
    gates = [open_gate(spine(amount=20000 + i)) for i in range(6)]
    client = login("adam")
    client.get("/console/")  # warm the session and content types
    counts = {}
    for per in (25, 100):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"/console/?per={per}").status_code == 200
        counts[per] = len(ctx.captured_queries)
    assert counts[25] == counts[100]
    with CaptureQueriesContext(connection) as ctx:
        client.get("/console/?per=25&workflow=pt004_execution_spine")
    assert len(ctx.captured_queries) == counts[25] + 1  # the filtered count
    # many more gates: the same number of queries
    gates += [open_gate(spine(amount=30000 + i)) for i in range(6)]
    with CaptureQueriesContext(connection) as ctx:
        client.get("/console/?per=25")
    assert len(ctx.captured_queries) == counts[25]
    body = client.get("/console/?per=25").content.decode()
    assert len(gate_ids(body, gates)) == 12


def test_a_vote_from_a_filtered_page_returns_to_it(spine, make_run, tenant):
    gate = open_gate(make_run(tenant))
    here = "/console/?workflow=vendor_payment&sort=age"
    response = login("adam").post(f"/console/gates/{gate.id}/decide",
                                  {"decision": "approve", "next": here})
    assert response.status_code == 302 and response["Location"] == here
    body = login("amira").get(here).content.decode()
    assert f'<input type="hidden" name="next" value="{here.replace("&", "&amp;")}">' in body


def test_an_htmx_vote_answers_the_partial_of_the_page_it_came_from(spine, make_run, tenant):
    flagged = open_gate(spine())
    gate = open_gate(make_run(tenant))
    response = login("adam").post(
        f"/console/gates/{gate.id}/decide", {"decision": "approve"}, **HTMX,
        HTTP_HX_CURRENT_URL="http://testserver/console/?workflow=vendor_payment")
    body = response.content.decode()
    assert "<html" not in body and "1 of 2 approvals" in body
    assert gate_ids(body, [flagged, gate]) == [gate.id]
    assert 'hx-get="/console/?workflow=vendor_payment"' in body


def test_input_schema_becomes_labelled_fields_and_is_sent_as_input(
        tenant, django_capture_on_commit_callbacks):
    load_bundle("docs/examples/pt004.yaml")
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = run_create(tenant=tenant, workflow="pt004_execution_spine",
                            input={"amount": 5}, actor="user:olivia")
    gate = run_request_gate(
        tenant=tenant, run_id=run.run_id, actor="user:olivia", reason="ticket needed",
        step_id="step_1", settings={
            "input_schema": {"type": "object", "required": ["ticket"],
                             "properties": {"ticket": {"type": "string", "title": "Ticket"},
                                            "hours": {"type": "integer"}}}})
    client = login("adam")
    body = client.get("/console/").content.decode()
    assert f'<label for="in-{gate.id}-ticket">Ticket' in body
    assert f'id="in-{gate.id}-hours" name="field-hours"' in body
    response = client.post(f"/console/gates/{gate.id}/decide",
                           {"decision": "approve", "field-hours": "3"})
    assert "ticket" in " ".join(flash(response))  # the schema refuses a missing ticket
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and not gate.approvals.exists()
    response = client.post(f"/console/gates/{gate.id}/decide",
                           {"decision": "approve", "field-ticket": "CHG-42",
                            "field-hours": "3"})
    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert gate.approvals.get().input == {"ticket": "CHG-42", "hours": 3}


def test_the_help_lists_the_keyboard_shortcuts(tenant):
    body = login("adam").get("/console/").content.decode()
    assert 'id="shortcut-help"' in body
    for key in ("<kbd>j</kbd>", "<kbd>k</kbd>", "<kbd>a</kbd>", "<kbd>r</kbd>", "<kbd>?</kbd>"):
        assert key in body
