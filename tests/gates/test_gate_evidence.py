"""Evidence of gate decisions (PT-005 item 9): every vote, resolution, expiry, escalation
and override is in the run's stream with actor, comment or justification and time, and in
the evidence pack (its `events` and its `gates` with their votes)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fcore.interfaces.api.evidence import evidence_pack
from gates.models import OVERRIDE_PERMISSION, Gate
from gates.services import Voter
from runs.models import Run
from runs.services import (
    gates_expire_due,
    run_create,
    run_gate_override,
    run_gate_vote,
    run_request_gate,
)
from tests.conftest import person

pytestmark = pytest.mark.django_db

ADAM = Voter(actor="user:adam", groups=frozenset({"approvers"}))
AMIRA = Voter(actor="user:amira", groups=frozenset({"approvers"}))


def payment(tenant, advance):
    with advance():
        run, _ = run_create(tenant=tenant, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 1200, "vendor": "v-1"})
    return run, Gate.objects.get(run=run)


def vote(run, gate, voter, decision, comment, advance):
    with advance():
        run_gate_vote(tenant=run.tenant, run_id=run.run_id, gate_id=gate.id, voter=voter,
                      decision=decision, comment=comment)


def pack_events(run, code):
    pack = evidence_pack(Run.objects.get(pk=run.pk))
    return pack, [e for e in pack["events"] if e["code"] == code]


def test_votes_and_the_resolution_are_in_the_evidence(pt004, advance):
    run, gate = payment(pt004, advance)
    vote(run, gate, ADAM, "approve", "invoice matches PO-7", advance)
    vote(run, gate, AMIRA, "reject", "vendor not on the list", advance)
    pack, votes = pack_events(run, "FC-GATE-002")
    assert [(e["actor"], e["data"]["vote"], e["data"]["comment"]) for e in votes] == [
        ("user:adam", "approve", "invoice matches PO-7"),
        ("user:amira", "reject", "vendor not on the list")]
    assert all(e["at"] and e["message"].startswith("Vote recorded on gate") for e in votes)
    (resolved,) = [e for e in pack["events"] if e["code"] == "FC-GATE-003"]
    assert resolved["actor"] == "user:amira"
    assert resolved["data"]["status"] == "rejected"
    assert resolved["data"]["reason"] == "vendor not on the list"
    assert [v["comment"] for v in resolved["data"]["votes"]] == ["invoice matches PO-7",
                                                                 "vendor not on the list"]
    (gate_out,) = pack["gates"]
    assert gate_out["status"] == "rejected" and gate_out["resolved_at"]
    assert [(a["actor"], a["decision"], a["comment"]) for a in gate_out["approvals"]] == [
        ("user:adam", "approve", "invoice matches PO-7"),
        ("user:amira", "reject", "vendor not on the list")]
    assert all(a["at"] for a in gate_out["approvals"])
    assert gate_out["resolution"]["by"] == "user:amira"
    assert pack["verification"]["receipts_verified"] is True


def test_expiry_and_escalation_are_in_the_evidence(pt004, advance):
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            actor="user:olivia", input={"amount": 1})
    with advance():
        gate = run_request_gate(tenant=pt004, run_id=run.run_id, actor="client:exec",
                                reason="odd vendor", step_id="step_1",
                                settings={"on_timeout": "escalate",
                                          "escalate_to": "operators", "expires_in": 60})
    with advance():
        gates_expire_due(now=timezone.now() + timedelta(seconds=120))
    with advance():
        gates_expire_due(now=timezone.now() + timedelta(hours=1))
    pack, timeouts = pack_events(run, "FC-GATE-004")
    assert [(e["actor"], e["data"]["status"], e["data"].get("action")) for e in timeouts] == [
        ("system:scheduler", "open", "escalated"), ("system:scheduler", "expired", None)]
    assert timeouts[0]["data"]["escalate_to"] == "operators"
    assert all(e["at"] for e in timeouts)
    (opened,) = [e for e in pack["events"] if e["code"] == "FC-GATE-001"]
    assert opened["actor"] == "client:exec" and opened["data"]["reason"] == "odd vendor"
    (gate_out,) = pack["gates"]
    assert gate_out["gate_id"] == gate.id and gate_out["status"] == "expired"
    assert gate_out["resolution"] == {"escalated": True, "by": "system:scheduler",
                                      "reason": "expired"}
    assert pack["run"]["status"] == "failed"


def test_an_override_is_in_the_evidence_with_its_justification(pt004, advance):
    run, gate = payment(pt004, advance)
    vote(run, gate, ADAM, "approve", "ok", advance)
    with advance():
        run_gate_override(tenant=pt004, run_id=run.run_id, gate_id=gate.id, actor="user:otto",
                          justification="INC-42: payroll cut-off",
                          user=person("otto-acting", OVERRIDE_PERMISSION))
    pack, overrides = pack_events(run, "FC-GATE-005")
    (event,) = overrides
    assert event["actor"] == "user:otto" and event["at"]
    assert event["data"]["justification"] == "INC-42: payroll cut-off"
    assert event["data"]["votes"] == [{"actor": "user:adam", "decision": "approve",
                                       "comment": "ok"}]
    (gate_out,) = pack["gates"]
    assert gate_out["status"] == "overridden" and gate_out["needs_review"] is True
    assert gate_out["resolution"]["justification"] == "INC-42: payroll cut-off"
    sign_off = next(s for s in pack["steps"] if s["step_id"] == "sign_off")
    assert sign_off["status"] == "succeeded" and sign_off["output"]["status"] == "overridden"


def test_the_evidence_endpoint_carries_gate_events(api, approver):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}",
                   {"decision": "approve", "comment": "checked"})
    pack = api.get(f"/workflows/runs/{run_id}/evidence").json()
    codes = [e["code"] for e in pack["events"]]
    assert codes.count("FC-GATE-001") == codes.count("FC-GATE-002") == 1
    assert codes.count("FC-GATE-003") == 1
    (voted,) = [e for e in pack["events"] if e["code"] == "FC-GATE-002"]
    assert (voted["actor"], voted["data"]["comment"]) == ("client:second_approver", "checked")
    assert pack["gates"][0]["approvals"][0]["comment"] == "checked"
