"""Every fact an evidence pack asserts is bound to the chain, both ways (issue 21.1).

A database superuser rewrites, deletes or adds rows that are not audit events — a
decision, a gate's outcome, a vote, an override or its review, a step's status, output or
error, the run's status or output — with the immutability triggers off. A freshly fetched
evidence pack then fails `verify_pack`, and `audit_verify` fails, both naming the row and
the event it disagrees with. Untouched packs of every kind of run verify, and "none" is
spelled null. On SQLite and PostgreSQL (the `postgres` cases with real commits).
"""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.binding import NULL_SPELLED, Unbound, check_bound
from audit.hashing import json_hash
from audit.immutability import triggers_suspended
from audit.models import AuditEvent
from audit.verify_pack import Failure, verify_pack
from gates.models import OVERRIDE_PERMISSION, REVIEW_PERMISSION, Approval, Gate, PolicyDecision
from runs.models import Run, StepRun
from runs.services import run_create, run_gate_override, run_gate_override_review
from tests.conftest import person


def _failed(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 5}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1",
              {"status": "failed", "error": {"detail": "executor crashed"}})
    assert Run.objects.get(pk=run_id).status == "failed"
    return run_id


def _denied(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 2_000_000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    assert Run.objects.get(pk=run_id).status == "failed"
    return run_id


def _running(api):
    return api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                        "input": {"amount": 5}}).json()["run_id"]


def _overridden(api, pt004, advance):
    """A vendor_payment run whose gate was forced through, cancelled, then reviewed."""
    with advance():
        run, _ = run_create(tenant=pt004, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 1200, "vendor": "v-1"})
    gate = Gate.objects.get(run=run)
    with advance():
        run_gate_override(tenant=pt004, run_id=run.run_id, gate_id=gate.id, actor="user:otto",
                          justification="bank cut-off",
                          user=person("otto-acting", OVERRIDE_PERMISSION))
    api.patch(f"/workflows/runs/{run.run_id}/status", {"status": "cancelled", "reason": "x"})
    with advance():
        run_gate_override_review(tenant=pt004, run_id=run.run_id, gate_id=gate.id,
                                 actor="user:rita", note="checked with finance",
                                 user=person("rita-acting", REVIEW_PERMISSION))
    return str(run.run_id)


@pytest.fixture
def runs(api, pt004, advance, completed_run):
    return {"completed": completed_run, "failed": _failed(api), "denied": _denied(api),
            "running": _running(api), "overridden": _overridden(api, pt004, advance)}


def _pack(api, run_id) -> dict:
    response = api.get(f"/workflows/runs/{run_id}/evidence")
    assert response.status_code == 200
    return response.json()


def _audit_verify() -> str:
    out = StringIO()
    with pytest.raises(CommandError, match="chain failure"):
        call_command("audit_verify", stdout=out)
    return out.getvalue()


# --- the rewrites: (run, change(cursor, run_id), what both verifiers name) ----------------

def _sql(cursor, sql, *params):
    cursor.execute(sql, list(params))


def _decision(run_id) -> PolicyDecision:
    return PolicyDecision.objects.filter(step_run__run_id=run_id).order_by("id").first()


def _gate(run_id) -> Gate:
    return Gate.objects.filter(run_id=run_id).order_by("id").first()


def _vote(run_id) -> Approval:
    return Approval.objects.filter(gate__run_id=run_id).order_by("id").first()


def _step(run_id, step_id) -> StepRun:
    return StepRun.objects.get(run_id=run_id, step_id=step_id)


def decision_deleted(cursor, run_id):
    _sql(cursor, "DELETE FROM gates_policydecision WHERE id = %s", _decision(run_id).id)


def decision_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_policydecision SET reason = %s WHERE id = %s",
         "no policy objected", _decision(run_id).id)


def decision_added(cursor, run_id):
    row = _decision(run_id)
    row.pk, row.attempt = None, 7
    row.save()


def gate_outcome_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_gate SET status = 'rejected' WHERE id = %s", _gate(run_id).id)


def gate_requester_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_gate SET requested_by = 'user:ceo' WHERE id = %s",
         _gate(run_id).id)


def gate_deleted(cursor, run_id):
    gate = _gate(run_id)
    for table in ("gates_approval", "gates_emailnotification", "gates_gatelinkuse"):
        _sql(cursor, f"DELETE FROM {table} WHERE gate_id = %s", gate.id)
    _sql(cursor, "UPDATE gates_webhookdelivery SET gate_id = NULL WHERE gate_id = %s", gate.id)
    _sql(cursor, "DELETE FROM gates_gate WHERE id = %s", gate.id)


def vote_deleted(cursor, run_id):
    _sql(cursor, "DELETE FROM gates_approval WHERE id = %s", _vote(run_id).id)


def vote_comment_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_approval SET comment = %s WHERE id = %s", "rubber stamp",
         _vote(run_id).id)


def vote_approver_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_approval SET actor = 'user:mallory' WHERE id = %s",
         _vote(run_id).id)


def vote_decision_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_approval SET decision = 'reject' WHERE id = %s",
         _vote(run_id).id)


def vote_input_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_approval SET input = %s WHERE id = %s", '{"limit": 9}',
         _vote(run_id).id)


def vote_added(cursor, run_id):
    vote = _vote(run_id)
    vote.pk, vote.actor = None, "user:ghost"
    vote.save()


def override_hidden(cursor, run_id):
    gate = _gate(run_id)
    resolution = {**gate.resolution, "reason": "quorum reached"}
    resolution.pop("justification")
    _sql(cursor, "UPDATE gates_gate SET status = 'approved', resolution = %s WHERE id = %s",
         json.dumps(resolution), gate.id)


def override_justification_rewritten(cursor, run_id):
    gate = _gate(run_id)
    _sql(cursor, "UPDATE gates_gate SET resolution = %s WHERE id = %s",
         json.dumps({**gate.resolution, "justification": "routine"}), gate.id)


def review_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE gates_gate SET review_note = 'never looked' WHERE id = %s",
         _gate(run_id).id)


def review_erased(cursor, run_id):
    _sql(cursor, "UPDATE gates_gate SET reviewed_by = '', review_note = '', "
                 "needs_review = %s WHERE id = %s", True, _gate(run_id).id)


def review_event_deleted(cursor, run_id):
    event = AuditEvent.objects.get(stream__name=f"run/{run_id}", code="FC-GATE-006")
    _sql(cursor, "DELETE FROM audit_auditevent WHERE id = %s", event.id)


def failed_step_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_steprun SET status = 'succeeded', error = NULL WHERE id = %s",
         _step(run_id, "step_1").id)


def step_error_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_steprun SET error = %s WHERE id = %s",
         '{"detail": "network blip"}', _step(run_id, "step_1").id)


def denied_step_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_steprun SET status = 'skipped', error = %s WHERE id = %s",
         '{"code": "skipped", "detail": "not needed"}', _step(run_id, "step_2").id)


def step_output_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_steprun SET output = %s WHERE id = %s", '{"n": 99}',
         _step(run_id, "step_3").id)


def step_output_and_hash_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_steprun SET output = %s, output_hash = %s WHERE id = %s",
         '{"n": 99}', json_hash({"n": 99}), _step(run_id, "step_3").id)


def step_added(cursor, run_id):
    step = _step(run_id, "step_5")
    step.pk, step.step_id, step.receipt_hash, step.receipt_seq = None, "step_6", "", 0
    step.save()


def run_status_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_run SET status = 'paused' WHERE run_id = %s", _hex(run_id))


def run_output_rewritten(cursor, run_id):
    _sql(cursor, "UPDATE runs_run SET output = %s WHERE run_id = %s", '{"paid": 1000000}',
         _hex(run_id))


def run_output_forged(cursor, run_id):
    _sql(cursor, "UPDATE runs_run SET output = %s WHERE run_id = %s", '{"paid": 1}',
         _hex(run_id))


def _hex(run_id):
    """The run_id as the database stores it (uuid on PostgreSQL, 32 hex digits on SQLite)."""
    return str(run_id) if connection.vendor == "postgresql" else run_id.replace("-", "")


# case: (run, change, named by verify_pack, named by audit_verify); None = same text
CASES = {
    "decision deleted": ("completed", decision_deleted,
                         "(FC-POL-001): records a decision for step step_1 attempt 1 that is "
                         "not in decisions", None),
    "decision rewritten": ("completed", decision_rewritten,
                           "decisions[0] (step step_1 attempt 1).reason: is 'no policy "
                           "objected', but events[", None),
    "decision added": ("completed", decision_added,
                       "(step step_1 attempt 7): no FC-POL-001 event records this decision",
                       None),
    "gate outcome rewritten": ("completed", gate_outcome_rewritten,
                               ".status: is 'rejected', but events[", None),
    "gate requester rewritten": ("completed", gate_requester_rewritten,
                                 ".requested_by: is 'user:ceo', but events[", None),
    "gate deleted": ("completed", gate_deleted, "(FC-GATE-001): records gate ", None),
    "vote deleted": ("completed", vote_deleted,
                     "(FC-GATE-002): records a vote by client:second_approver that is not "
                     "in gates[0]", None),
    "vote comment rewritten": ("completed", vote_comment_rewritten,
                               "approvals[0] (vote of client:second_approver).comment: is "
                               "'rubber stamp', but events[", None),
    "vote approver rewritten": ("completed", vote_approver_rewritten,
                                "approvals[0] (vote of user:mallory): no FC-GATE-002 event "
                                "records this vote", None),
    "vote decision rewritten": ("completed", vote_decision_rewritten,
                                "(vote of client:second_approver).decision: is 'reject', "
                                "but events[", None),
    "vote input rewritten": ("completed", vote_input_rewritten,
                             "(vote of client:second_approver).input: is {'limit': 9}, "
                             "but events[", None),
    "vote added": ("completed", vote_added,
                   "approvals[1] (vote of user:ghost): no FC-GATE-002 event records this "
                   "vote", None),
    "override hidden": ("overridden", override_hidden,
                        ".status: is 'approved', but events[", None),
    "override justification rewritten": ("overridden", override_justification_rewritten,
                                          ".resolution.justification: is 'routine', but "
                                          "events[", None),
    "review rewritten": ("overridden", review_rewritten,
                         ".review_note: is 'never looked', but events[", None),
    "review erased": ("overridden", review_erased, ".reviewed_by: is unset, but events[",
                      None),
    "failed step rewritten": ("failed", failed_step_rewritten,
                              "steps[0] (step step_1).status: is 'succeeded', but events[",
                              None),
    "step error rewritten": ("failed", step_error_rewritten,
                             "steps[0] (step step_1).error: is {'detail': 'network blip'}",
                             None),
    "denied step rewritten": ("denied", denied_step_rewritten,
                              "steps[1] (step step_2).status: is 'skipped', but events[",
                              None),
    "step output rewritten": ("completed", step_output_rewritten,
                              "steps[2].output: does not match the receipt's output_hash",
                              "steps[2] (step step_3).output: does not hash to the "
                              "output_hash of events["),
    "step output and hash rewritten": ("completed", step_output_and_hash_rewritten,
                                       "receipts[2].receipt_hash: does not match its fields",
                                       "steps[2] (step step_3).output_hash: is '"),
    "step added": ("completed", step_added,
                   "steps[5] (step step_6).status: is 'succeeded', but no event records "
                   "a change of this step", None),
    "run status rewritten": ("completed", run_status_rewritten,
                             "run.status: differs from the status sealed in events[",
                             "run.status: is 'paused', but events["),
    "run output rewritten": ("completed", run_output_rewritten,
                             "run.output: does not hash to the output_hash sealed in events[",
                             None),
    "output on a running run": ("running", run_output_forged,
                                "run.output: is set, but no FC-RUN-003 event seals the run",
                                None),
}


def tamper_and_verify(api, runs, case):
    which, change, by_pack, by_db = CASES[case]
    run_id = runs[which]
    verify_pack(_pack(api, run_id))  # clean before
    call_command("audit_verify", stdout=StringIO())
    with triggers_suspended(connection), connection.cursor() as cursor:
        change(cursor, run_id)
    with pytest.raises(Failure) as caught:
        verify_pack(_pack(api, run_id))  # a fresh pack, signed over the rewritten rows
    assert by_pack in str(caught.value), str(caught.value)
    report = _audit_verify()
    assert f"run/{run_id}" in report and (by_db or by_pack) in report, report


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_a_rewritten_row_fails_both_verifiers(api, runs, case):
    tamper_and_verify(api, runs, case)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", list(CASES))
def test_a_rewritten_row_fails_both_verifiers_with_real_commits_on_postgres(api, runs, case):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (run with DATABASE_URL=postgres://…)")
    tamper_and_verify(api, runs, case)


@pytest.mark.django_db
def test_a_deleted_review_event_leaves_a_review_no_event_records(api, runs):
    """The other direction for reviews: the row claims a review, its event is gone (the
    chain no longer links, and the row is named too once the chain is re-made)."""
    run_id = runs["overridden"]
    with triggers_suspended(connection), connection.cursor() as cursor:
        review_event_deleted(cursor, run_id)
    pack = _pack(api, run_id)
    pack["events"] = [e for e in pack["events"] if e["code"] != "FC-GATE-006"]
    with pytest.raises(Unbound, match=r"gates\[0\] \(gate \d+\)\.reviewed_by: is set, but "
                                      "no FC-GATE-006 event"):
        check_bound(run=pack["run"], steps=pack["steps"], decisions=pack["decisions"],
                    gates=pack["gates"], events=pack["events"])
    assert "reviewed_by: is set, but no FC-GATE-006 event" in _audit_verify()


@pytest.mark.django_db
def test_untouched_packs_of_every_kind_of_run_verify(api, runs):
    for which, run_id in runs.items():
        lines = verify_pack(_pack(api, run_id))
        assert "every fact bound to its event, both ways" in lines[1], which
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert "OK" in out.getvalue()


# --- the spelling of "none" -------------------------------------------------------------

@pytest.mark.django_db
def test_none_is_spelled_null_in_a_pack(api, runs):
    running = _pack(api, runs["running"])
    assert running["workflow_hash"] is None and running["run"]["workflow_hash"] is None
    pending = [s for s in running["steps"] if s["status"] == "pending"]
    assert pending and all(s[f] is None for s in pending for f in NULL_SPELLED["steps"])
    for which in runs:
        pack = _pack(api, which and runs[which])
        for section, fields in NULL_SPELLED.items():
            rows = pack[section] if isinstance(pack[section], list) else [pack[section]]
            assert all(row.get(f) != "" for row in rows for f in fields), (which, section)
    overridden = _pack(api, runs["overridden"])
    assert overridden["gates"][0]["reviewed_by"] == "user:rita"


@pytest.mark.django_db
def test_a_failed_step_has_a_null_output_hash_everywhere(api, runs):
    pack = _pack(api, runs["failed"])
    step = next(s for s in pack["steps"] if s["step_id"] == "step_1")
    receipt = next(r for r in pack["receipts"] if r["step_id"] == "step_1")
    (event,) = [e for e in pack["events"] if e["code"] == "FC-STEP-003"]
    assert step["output"] is None and step["output_hash"] is None
    assert receipt["output_hash"] is None and event["data"]["output_hash"] is None
    assert event["data"]["error"] == step["error"] == {"detail": "executor crashed"}
    assert api.get(f"/workflows/runs/{runs['failed']}/receipt").json()["verified"] is True


@pytest.mark.django_db
def test_a_run_without_receipts_seals_64_zeros_and_its_output(api, runs):
    pack = _pack(api, runs["denied"])
    (seal,) = [e for e in pack["events"] if e["code"] == "FC-RUN-003"]
    assert seal["data"]["output_hash"] is None and pack["run"]["output"] is None
    failed = _pack(api, runs["failed"])
    assert not failed["receipts"] or failed["receipts"][0]["prev_receipt_hash"] == "0" * 64
    completed = _pack(api, runs["completed"])
    (seal,) = [e for e in completed["events"] if e["code"] == "FC-RUN-003"]
    assert seal["data"]["output_hash"] == json_hash(completed["run"]["output"])


@pytest.mark.django_db
def test_an_empty_string_for_none_fails_the_verifier(api, runs):
    for section, field, path in (("run", "workflow_hash", "run.workflow_hash"),
                                 ("steps", "receipt_hash", "steps[4].receipt_hash")):
        pack = _pack(api, runs["running"])
        row = pack[section] if section == "run" else pack[section][4]
        row[field] = ""
        with pytest.raises(Failure) as caught:
            verify_pack(pack)
        assert str(caught.value) == f'{path}: is "": the format spells none as null'
