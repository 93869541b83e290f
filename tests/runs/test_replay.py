"""`replay_decisions`: a run's recorded decisions replayed against their pinned policy
versions give the same answers; a tampered decision or policy version is reported (exit 1).
Decisions are rows beside the audit chain: tampering with them leaves every audit stream
verifiable (checked after every test), which is why replay is the check that finds it."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gates.models import PolicyDecision, PolicyVersion
from gates.services import Voter
from runs.models import Run, RunStatus
from runs.services import run_create, run_gate_vote, step_report

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_streams_verify")]

STEPS = [f"step_{i}" for i in range(1, 6)]


@pytest.fixture
def completed(pt004, advance) -> Run:
    """A PT-004 run flagged at step_2, approved, and completed: five decisions, one flag."""
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            actor="user:olivia", input={"amount": 25000})
    for step_id in STEPS:
        if step_id == "step_2":
            gate = run.gates.get()
            with advance():
                run_gate_vote(tenant=pt004, run_id=run.run_id, gate_id=gate.id,
                              voter=Voter(actor="user:adam", groups=frozenset({"approvers"})),
                              decision="approve")
        with advance():
            step_report(tenant=pt004, run_id=run.run_id, step_id=step_id,
                        actor="client:exec", status="succeeded", output={"done": step_id})
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    return run


def replay(*args) -> tuple[int, str]:
    """(exit code, stdout) of replay_decisions."""
    out = StringIO()
    try:
        call_command("replay_decisions", *args, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def decision(run, step_id="step_2"):
    return PolicyDecision.objects.filter(step_run__run=run, step_run__step_id=step_id)


def test_a_completed_run_replays_the_same(completed):
    assert decision(completed).get().decision == "flag"
    code, out = replay(str(completed.run_id))
    assert code == 0
    assert out.strip() == f"{completed.run_id}: 5 decision(s) replayed, same"


def test_json_output_parses(completed):
    code, out = replay(str(completed.run_id), "--json")
    assert code == 0
    assert json.loads(out) == [{"run_id": str(completed.run_id), "checked": 5, "ok": True,
                                "differences": []}]


def test_a_tampered_decision_is_reported_and_exits_1(completed):
    flagged = decision(completed).get()
    decision(completed).update(decision="allow", rules_triggered=[])
    code, out = replay(str(completed.run_id))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{completed.run_id}: 5 decision(s) replayed, 2 difference(s)"
    assert lines[1] == "  step_2 attempt 1 decision: recorded 'allow', replayed 'flag'"
    assert lines[2].startswith("  step_2 attempt 1 rules_triggered: recorded [], replayed [(")
    code, out = replay(str(completed.run_id), "--json")
    (report,) = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert [(d["step_id"], d["field"], d["decision_id"]) for d in report["differences"]] == [
        ("step_2", "decision", flagged.id), ("step_2", "rules_triggered", flagged.id)]
    # put the row back: audit_verify checks decision rows against their events
    decision(completed).update(decision=flagged.decision, rules_triggered=flagged.rules_triggered)


def test_a_tampered_reason_alone_is_reported(completed):
    reason = decision(completed, "step_4").get().reason
    decision(completed, "step_4").update(reason="made up")
    code, out = replay(str(completed.run_id), "--json")
    (report,) = json.loads(out)
    assert code == 1
    assert report["differences"] == [{
        "step_id": "step_4", "attempt": 1, "decision_id": decision(completed, "step_4").get().id,
        "field": "reason", "recorded": "made up", "replayed": "no rule fired"}]
    decision(completed, "step_4").update(reason=reason)  # audit_verify checks the row too


def test_a_tampered_policy_version_is_reported_and_exits_1(completed):
    version = PolicyVersion.objects.get(policy__name="pt004_spend_review", version=1)
    rules = [{**version.rules[0], "when": version.rules[0]["when"].replace("10000", "50000")}]
    PolicyVersion.objects.filter(pk=version.pk).update(rules=rules)
    code, out = replay(str(completed.run_id), "--json")
    (report,) = json.loads(out)
    assert code == 1 and report["checked"] == 5
    changed = {d["field"]: (d["recorded"], d["replayed"]) for d in report["differences"]}
    assert {d["step_id"] for d in report["differences"]} == {"step_2"}
    assert changed["decision"] == ("flag", "allow")
    assert "rules_triggered" in changed


def test_a_pinned_version_that_disappeared_is_reported(completed):
    PolicyVersion.objects.filter(policy__name="pt004_hard_limits", version=1).update(
        version=99)
    code, out = replay(str(completed.run_id), "--json")
    (report,) = json.loads(out)
    assert code == 1
    assert {d["field"] for d in report["differences"]} == {"policy_versions"}
    assert len(report["differences"]) == 5  # every decision pinned that version
    assert "pinned version(s) not found" in report["differences"][0]["problem"]


def test_several_runs_and_an_unknown_run(completed, pt004, advance):
    with advance():
        other, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                              actor="user:olivia", input={"amount": 1})
    code, out = replay(str(completed.run_id), str(other.run_id))
    assert code == 0
    assert out.splitlines() == [f"{completed.run_id}: 5 decision(s) replayed, same",
                                f"{other.run_id}: 1 decision(s) replayed, same"]
    with pytest.raises(CommandError, match="no run 'nope'"):
        call_command("replay_decisions", "nope", stdout=StringIO())
