"""The engine through its services: gates on steps, fan-out/fan-in, receipts, cancel,
expiry and escalation, gate input, and exactly-once recording."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.hashing import GENESIS_HASH, json_hash
from audit.models import AuditEvent
from fcore.errors import BadRequest, Conflict, Forbidden, FourEyes, InvalidTransition
from gates.models import Gate, GateStatus
from gates.services import Voter
from runs import engine
from runs.definitions import definition_publish
from runs.models import Run, RunStatus, StepRun, StepStatus
from runs.services import (
    gates_expire_due,
    run_create,
    run_gate_vote,
    run_request_gate,
    run_set_status,
    step_report,
)
from runs.verification import run_receipts_verify

pytestmark = pytest.mark.django_db

CREATOR = "user:olivia"
ADAM = Voter(actor="user:adam", groups=frozenset({"approvers"}))
AMIRA = Voter(actor="user:amira", groups=frozenset({"approvers"}))


def fresh(run: Run) -> Run:
    return Run.objects.get(pk=run.pk)


def steps_of(run: Run) -> dict[str, str]:
    return {s.step_id: s.status for s in StepRun.objects.filter(run=run).order_by("index")}


def events(run: Run, code: str | None = None) -> list[AuditEvent]:
    qs = AuditEvent.objects.filter(stream__name=run.stream_name).order_by("seq")
    return list(qs.filter(code=code) if code else qs)


def the_gate(run: Run) -> Gate:
    return Gate.objects.get(run=run)


def vote(run, gate, voter, decision="approve", advance=None, **kw):
    with advance():
        return run_gate_vote(tenant=run.tenant, run_id=run.run_id, gate_id=gate.id,
                             voter=voter, decision=decision, **kw)


@pytest.fixture
def payment(pt004, advance):
    """A vendor_payment run paused at its two-person `sign_off` gate."""
    with advance():
        run, _ = run_create(tenant=pt004, workflow="vendor_payment", actor=CREATOR,
                            input={"amount": 1200, "vendor": "vendor-1"})
    return fresh(run)


# --- vendor_payment: an approval step with a quorum of two --------------------------------

def test_the_run_pauses_at_the_approval_step(payment):
    assert payment.status == RunStatus.PAUSED
    assert payment.current_step == "sign_off"
    assert steps_of(payment) == {"validate": "succeeded", "sign_off": "waiting",
                                 "pay": "pending"}
    gate = the_gate(payment)
    assert (gate.status, gate.source, gate.required_approvals, gate.approver_group) == (
        GateStatus.OPEN, "approval_step", 2, "approvers")
    assert gate.step_run.step_id == "sign_off"
    assert gate.expires_at is not None and gate.on_timeout == "reject"


def test_two_distinct_approvals_release_the_step_and_pay_starts(payment, advance):
    gate = the_gate(payment)
    vote(payment, gate, ADAM, advance=advance, comment="looks right")
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN  # one of two: the quorum is not met
    assert fresh(payment).status == RunStatus.PAUSED
    assert steps_of(payment)["sign_off"] == "waiting"
    first_vote = events(payment, "FC-GATE-002")[-1]
    assert first_vote.data["approvals"] == 1 and first_vote.data["required_approvals"] == 2

    vote(payment, gate, AMIRA, advance=advance)
    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert gate.resolution["reason"] == "quorum reached"
    assert gate.resolution["by"] == "user:amira"
    assert [v["actor"] for v in gate.resolution["votes"]] == ["user:adam", "user:amira"]
    run = fresh(payment)
    assert run.status == RunStatus.RUNNING and run.current_step == "pay"
    assert steps_of(run) == {"validate": "succeeded", "sign_off": "succeeded",
                             "pay": "running"}
    sign_off = StepRun.objects.get(run=run, step_id="sign_off")
    assert sign_off.output["gate_id"] == gate.id and sign_off.output["status"] == "approved"
    resolved = events(run, "FC-GATE-003")[-1]
    assert resolved.data["status"] == "approved"

    with advance():
        step_report(tenant=run.tenant, run_id=run.run_id, step_id="pay", actor="client:bank",
                    status="succeeded", output={"paid": 1200})
    run = fresh(run)
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"pay": {"paid": 1200}}


def test_the_same_approver_cannot_count_twice(payment, advance):
    gate = the_gate(payment)
    vote(payment, gate, ADAM, advance=advance)
    with pytest.raises(Conflict) as info:
        vote(payment, gate, ADAM, advance=advance)
    assert info.value.code == "already_voted"
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and gate.approvals.count() == 1


def test_a_reject_fails_the_run_and_cancels_pay(payment, advance):
    gate = the_gate(payment)
    vote(payment, gate, ADAM, advance=advance)
    vote(payment, gate, AMIRA, "reject", advance=advance, comment="wrong vendor")
    gate.refresh_from_db()
    assert gate.status == GateStatus.REJECTED and gate.resolution["reason"] == "wrong vendor"
    run = fresh(payment)
    assert run.status == RunStatus.FAILED
    assert run.status_reason == f"gate {gate.id} rejected"
    assert steps_of(run) == {"validate": "succeeded", "sign_off": "cancelled",
                             "pay": "cancelled"}
    assert not StepRun.objects.filter(run=run, step_id="pay", started_at__isnull=False).exists()
    assert len(run.workflow_hash) == 64
    assert events(run)[-1].code == "FC-RUN-003"


def test_four_eyes_the_run_creator_cannot_vote(payment, advance):
    creator = Voter(actor=CREATOR, groups=frozenset({"approvers", "operators"}))
    with pytest.raises(FourEyes) as info:
        vote(payment, the_gate(payment), creator, advance=advance)
    assert info.value.code == "four_eyes" and info.value.status == 403
    assert the_gate(payment).approvals.count() == 0
    assert events(payment, "FC-GATE-002") == []


def test_a_machine_requester_cannot_vote_on_its_own_gate(pt004, advance):
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            actor="client:exec", input={"amount": 1})
    with advance():
        gate = run_request_gate(tenant=pt004, run_id=run.run_id, actor="client:asker",
                                reason="second look")
    with pytest.raises(FourEyes):
        vote(run, gate, Voter(actor="client:asker"), advance=advance)
    vote(run, gate, Voter(actor="client:other"), advance=advance)
    assert fresh(run).status == RunStatus.RUNNING


def test_a_person_outside_the_approver_group_is_forbidden(payment, advance):
    operator = Voter(actor="user:x", groups=frozenset({"operators"}))
    with pytest.raises(Forbidden) as info:
        vote(payment, the_gate(payment), operator, advance=advance)
    assert not isinstance(info.value, FourEyes)
    assert info.value.code == "not_an_approver"
    assert the_gate(payment).approvals.count() == 0


def test_an_unknown_decision_is_a_bad_request(payment, advance):
    with pytest.raises(BadRequest) as info:
        vote(payment, the_gate(payment), ADAM, "maybe", advance=advance)
    assert info.value.context["errors"] == {"decision": ["approve or reject"]}


# --- nightly_report: fan-out and fan-in ---------------------------------------------------

def test_parallel_steps_both_run_and_the_join_runs_after_both(pt004, advance):
    with advance():
        run, _ = run_create(tenant=pt004, workflow="nightly_report", input={},
                            actor=CREATOR)
    run = fresh(run)
    assert run.status == RunStatus.COMPLETED
    assert steps_of(run) == {"collect_a": "succeeded", "collect_b": "succeeded",
                             "publish": "succeeded"}
    trail = [(e.code, e.data.get("step_id")) for e in events(run)
             if e.code in ("FC-STEP-001", "FC-STEP-002")]
    position = {item: i for i, item in enumerate(trail)}
    started_a, started_b = position[("FC-STEP-001", "collect_a")], position[
        ("FC-STEP-001", "collect_b")]
    done_a, done_b = position[("FC-STEP-002", "collect_a")], position[
        ("FC-STEP-002", "collect_b")]
    assert max(started_a, started_b) < min(done_a, done_b)  # both in flight together
    assert position[("FC-STEP-001", "publish")] > max(done_a, done_b)
    assert run.output == {"publish": {}}
    decisions = [e.data["step_id"] for e in events(run, "FC-POL-001")]
    assert sorted(decisions) == ["collect_a", "collect_b", "publish"]


# --- receipts ----------------------------------------------------------------------------

def test_receipts_chain_in_the_order_steps_ended_and_verify(payment, advance):
    gate = the_gate(payment)
    vote(payment, gate, ADAM, advance=advance)
    vote(payment, gate, AMIRA, advance=advance)
    with advance():
        step_report(tenant=payment.tenant, run_id=payment.run_id, step_id="pay",
                    actor="client:bank", status="succeeded", output={"paid": True})
    run = fresh(payment)
    report = run_receipts_verify(run)
    assert report["verified"] is True, report["failures"]
    assert report["workflow_hash"] == run.workflow_hash and len(run.workflow_hash) == 64
    receipts = report["receipts"]
    assert [r["step_id"] for r in receipts] == ["validate", "sign_off", "pay"]
    assert [r["receipt_seq"] for r in receipts] == [1, 2, 3]
    assert receipts[0]["prev_receipt_hash"] == GENESIS_HASH
    for previous, current in zip(receipts, receipts[1:], strict=False):
        assert current["prev_receipt_hash"] == previous["receipt_hash"]
    pay = StepRun.objects.get(run=run, step_id="pay")
    assert pay.output_hash == json_hash({"paid": True})
    assert pay.input_hash == json_hash(pay.input)
    seal = events(run)[-1]
    assert seal.code == "FC-RUN-003"
    assert seal.data["last_receipt_hash"] == receipts[-1]["receipt_hash"]
    assert seal.data["workflow_hash"] == run.workflow_hash


def test_a_tampered_receipt_does_not_verify(payment, advance):
    gate = the_gate(payment)
    vote(payment, gate, ADAM, advance=advance)
    vote(payment, gate, AMIRA, advance=advance)
    StepRun.objects.filter(run=payment, step_id="validate").update(output={"forged": 1})
    report = run_receipts_verify(fresh(payment))
    assert report["verified"] is False
    assert {"step_id": "validate", "attempt": 1,
            "problem": "output_hash does not match the stored output"} in report["failures"]


# --- cancel ------------------------------------------------------------------------------

def test_cancel_closes_pending_steps_and_open_gates_and_seals(payment, advance):
    gate = the_gate(payment)
    with advance():
        run_set_status(tenant=payment.tenant, run_id=payment.run_id, status="cancelled",
                       actor="user:otto", reason="vendor withdrew")
    run = fresh(payment)
    assert run.status == RunStatus.CANCELLED and run.ended_at is not None
    assert steps_of(run) == {"validate": "succeeded", "sign_off": "cancelled",
                             "pay": "cancelled"}
    gate.refresh_from_db()
    assert gate.status == GateStatus.CANCELLED
    assert gate.resolution["reason"] == "run cancel: vendor withdrew"
    closed = events(run, "FC-GATE-003")[-1]
    assert closed.data["status"] == "cancelled" and closed.actor == "user:otto"
    moved = events(run, "FC-RUN-002")[-1]
    assert moved.data == {"from": "paused", "to": "cancelled", "reason": "vendor withdrew"}
    assert {e.data["step_id"]: e.data["status"] for e in events(run, "FC-STEP-005")} == {
        "sign_off": "cancelled", "pay": "cancelled"}
    seal = events(run)[-1]
    assert seal.code == "FC-RUN-003" and seal.data["status"] == "cancelled"
    assert run_receipts_verify(run)["verified"] is True
    with pytest.raises(InvalidTransition) as info:  # a cancelled gate takes no votes
        vote(run, gate, ADAM, advance=advance)
    assert info.value.context["current"] == "cancelled"


# --- expiry and escalation ---------------------------------------------------------------

def test_an_expired_gate_fails_the_run(payment, advance):
    gate = the_gate(payment)
    with advance():
        assert gates_expire_due(now=timezone.now() + timedelta(hours=1)) == 0
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN
    with advance():
        assert gates_expire_due(now=timezone.now() + timedelta(days=2)) == 1
    gate.refresh_from_db()
    assert gate.status == GateStatus.EXPIRED and gate.resolution["by"] == "system:scheduler"
    expired = events(payment, "FC-GATE-004")
    assert len(expired) == 1 and expired[0].data["status"] == "expired"
    run = fresh(payment)
    assert run.status == RunStatus.FAILED
    assert run.status_reason == f"gate {gate.id} expired"
    assert steps_of(run) == {"validate": "succeeded", "sign_off": "cancelled",
                             "pay": "cancelled"}
    with advance():
        assert gates_expire_due(now=timezone.now() + timedelta(days=3)) == 0


@pytest.fixture
def escalating(pt004, advance):
    """A running pt004 run with a requested gate that escalates to operators after 60 s."""
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine", actor=CREATOR,
                            input={"amount": 1})
    with advance():
        gate = run_request_gate(tenant=pt004, run_id=run.run_id, actor="client:exec",
                                reason="odd vendor", step_id="step_1",
                                settings={"on_timeout": "escalate", "escalate_to": "operators",
                                          "expires_in": 60})
    return fresh(run), gate


def test_an_escalating_gate_is_escalated_once_then_expired(escalating, advance):
    run, gate = escalating
    assert run.status == RunStatus.PAUSED
    first_deadline = gate.expires_at
    with advance():
        assert gates_expire_due(now=timezone.now() + timedelta(seconds=120)) == 1
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and gate.resolution == {"escalated": True}
    assert gate.expires_at > first_deadline
    escalated = events(run, "FC-GATE-004")
    assert [e.data.get("action") for e in escalated] == ["escalated"]
    assert escalated[0].data["escalate_to"] == "operators"
    assert fresh(run).status == RunStatus.PAUSED

    with advance():
        assert gates_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    gate.refresh_from_db()
    assert gate.status == GateStatus.EXPIRED
    assert [e.data.get("status") for e in events(run, "FC-GATE-004")] == ["open", "expired"]
    run = fresh(run)
    assert run.status == RunStatus.FAILED
    assert steps_of(run)["step_1"] == "failed"  # it was running when the run failed


def test_after_escalation_the_escalation_group_may_vote(escalating, advance):
    run, gate = escalating
    operator = Voter(actor="user:olga", groups=frozenset({"operators"}))
    with pytest.raises(Forbidden):
        vote(run, gate, operator, advance=advance)
    with advance():
        gates_expire_due(now=timezone.now() + timedelta(seconds=120))
    vote(run, gate, operator, advance=advance)
    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert fresh(run).status == RunStatus.RUNNING


def test_escalation_extends_the_deadline_from_the_scheduler_clock(escalating, advance):
    # gates_expire_due takes the clock as `now`; the extended deadline must count from
    # that clock, so a second pass at the same moment does not expire the fresh window.
    run, gate = escalating
    clock = timezone.now() + timedelta(minutes=10)
    with advance():
        gates_expire_due(now=clock)
    gate.refresh_from_db()
    assert gate.expires_at >= clock + timedelta(seconds=60)
    with advance():
        gates_expire_due(now=clock)
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


# --- gate input ---------------------------------------------------------------------------

TICKET_SCHEMA = {"type": "object", "required": ["ticket"],
                 "properties": {"ticket": {"type": "string", "pattern": "^T-[0-9]+$"}}}


@pytest.fixture
def ticketed(pt004, advance):
    definition_publish(tenant=pt004, name="ticketed_change", actor="user:priya", steps=[
        {"id": "sign", "type": "approval",
         "gate": {"required_approvals": 1, "input_schema": TICKET_SCHEMA}},
        {"id": "apply", "type": "external"}])
    with advance():
        run, _ = run_create(tenant=pt004, workflow="ticketed_change", actor=CREATOR,
                            input={"change": "rotate keys"})
    return fresh(run)


@pytest.mark.parametrize(("data", "errors"), [
    (None, {"input": "None is not of type 'object'"}),
    ({}, {"input": "'ticket' is a required property"}),
    ({"ticket": "12"}, {"ticket": "'12' does not match '^T-[0-9]+$'"}),
])
def test_a_vote_that_does_not_answer_the_input_schema_is_refused(ticketed, advance, data,
                                                                 errors):
    gate = the_gate(ticketed)
    assert gate.input_schema == TICKET_SCHEMA
    with pytest.raises(BadRequest) as info:
        vote(ticketed, gate, ADAM, advance=advance, data=data)
    assert info.value.code == "invalid_input"
    assert info.value.context["errors"] == errors
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN and gate.approvals.count() == 0


def test_a_valid_vote_input_becomes_the_approval_steps_input(ticketed, advance):
    gate = the_gate(ticketed)
    vote(ticketed, gate, ADAM, advance=advance, data={"ticket": "T-42"})
    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert gate.resolution["input"] == {"ticket": "T-42"}
    sign = StepRun.objects.get(run=ticketed, step_id="sign")
    assert sign.status == StepStatus.SUCCEEDED
    assert sign.input == {"change": "rotate keys", "approval_input": {"ticket": "T-42"}}
    assert sign.input_hash == json_hash(sign.input)
    assert sign.output["input"] == {"ticket": "T-42"}
    voted = events(ticketed, "FC-GATE-002")[-1]
    assert voted.data["input"] == {"ticket": "T-42"}
    assert steps_of(ticketed)["apply"] == "running"


def test_a_reject_needs_no_input(ticketed, advance):
    vote(ticketed, the_gate(ticketed), ADAM, "reject", advance=advance)
    assert fresh(ticketed).status == RunStatus.FAILED


# --- exactly-once recording --------------------------------------------------------------

@pytest.fixture
def validating(pt004, django_capture_on_commit_callbacks):
    """A vendor_payment run whose internal `validate` step is running, nothing executed."""
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_create(tenant=pt004, workflow="vendor_payment", actor=CREATOR,
                            input={"amount": 10, "vendor": "v"})
        engine.run_advance(run.run_id)
    assert steps_of(run)["validate"] == "running"
    return fresh(run)


def test_executing_a_step_twice_records_it_once(validating, advance):
    with advance():
        engine.step_execute(validating.run_id, "validate", 1)
        engine.step_execute(validating.run_id, "validate", 1)
    step = StepRun.objects.get(run=validating, step_id="validate")
    assert step.status == StepStatus.SUCCEEDED and step.receipt_seq == 1
    completed = [e for e in events(validating, "FC-STEP-002")
                 if e.data["step_id"] == "validate"]
    assert len(completed) == 1
    assert fresh(validating).status == RunStatus.PAUSED  # moved on to sign_off, once
    assert Gate.objects.filter(run=validating).count() == 1


def test_a_stale_or_repeated_result_is_not_recorded(validating, advance):
    with advance():
        stale = engine.step_record_result(validating.run_id, "validate", 2, succeeded=False,
                                          output=None, actor="system:engine",
                                          error={"detail": "late worker"})
    assert stale is False
    assert steps_of(validating)["validate"] == "running"
    with advance():
        first = engine.step_record_result(validating.run_id, "validate", 1, succeeded=True,
                                          output={"ok": 1}, actor="system:engine")
        again = engine.step_record_result(validating.run_id, "validate", 1, succeeded=False,
                                          output=None, actor="system:engine")
    assert (first, again) == (True, False)
    step = StepRun.objects.get(run=validating, step_id="validate")
    assert step.status == StepStatus.SUCCEEDED and step.output == {"ok": 1}
    assert len(events(validating, "FC-STEP-002")) == 1
    assert events(validating, "FC-STEP-003") == []


def test_executing_a_step_that_is_not_running_does_nothing(payment, advance):
    before = len(events(payment))
    with advance():
        engine.step_execute(payment.run_id, "pay", 1)       # pending
        engine.step_execute(payment.run_id, "validate", 1)  # already succeeded
        engine.run_advance(payment.run_id)                  # paused: nothing to do
    assert len(events(payment)) == before
