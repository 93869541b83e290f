"""The workflow language in the engine (DESIGN §11): data between steps, `when`, `map`,
a workflow's `output`, and expressions that fail closed. Eager Celery on the test database;
after every test, every audit stream still verifies."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from fcore.models import Tenant
from gates.models import Gate, PolicyDecision
from gates.policies import policy_save
from runs.definitions import definition_publish
from runs.models import Run, RunStatus, StepRun
from runs.replay import replay_decisions
from runs.services import run_create, step_report
from runs.verification import run_receipts_verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_streams_verify")]

ECHO = "python:runs.examples.echo"
FLAKY = "python:runs.examples.flaky"


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(slug="tenant_lang", name="Language")


def launch(tenant, advance, steps, *, input=None, output=None) -> Run:
    definition_publish(tenant=tenant, name="wf", steps=steps, actor="user:priya",
                       output=output)
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input=input or {},
                            actor="user:olivia")
    return Run.objects.get(pk=run.pk)


def report(tenant, advance, run, step_id, output, status="succeeded"):
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id=step_id, actor="user:exec",
                    status=status, output=output,
                    error=None if status == "succeeded" else {"detail": "no"})
    run.refresh_from_db()


def steps(run) -> dict[str, StepRun]:
    return {s.step_id: s for s in StepRun.objects.filter(run=run).order_by("index", "id")}


def statuses(run) -> dict[str, str]:
    return {k: s.status for k, s in steps(run).items()}


def events(run, code) -> list[dict]:
    return [e.data for e in AuditEvent.objects.filter(stream__name=run.stream_name, code=code)
            .order_by("seq")]


AGENT = [
    {"id": "plan", "type": "external"},
    {"id": "pay", "type": "external", "after": ["plan"],
     "when": "steps.plan.output.amount > 0",
     "input": {"amount": "=steps.plan.output.amount", "payee": "=steps.plan.output.payee",
               "currency": "EUR", "note": "==literal", "deep": [{"n": "=run.input.ref"}]}},
]


def test_a_step_receives_and_is_decided_on_what_an_upstream_step_produced(tenant, advance):
    policy_save(tenant=tenant, name="big", actor="user:priya", tier=2,
                applies_to={"workflows": ["wf"], "step_types": ["*"]},
                rules=[{"id": "big", "effect": "flag", "when": "input.amount > 10000",
                        "reason": "large payment"}])
    run = launch(tenant, advance, AGENT, input={"ref": "R-1", "amount": 1})
    report(tenant, advance, run, "plan", {"amount": 25000, "payee": "X"})
    pay = steps(run)["pay"]
    expected = {"ref": "R-1", "amount": 25000, "payee": "X", "currency": "EUR",
                "note": "=literal", "deep": [{"n": "R-1"}]}
    assert pay.input == expected and isinstance(pay.input["amount"], int)
    decision = PolicyDecision.objects.get(step_run=pay)
    assert decision.decision == "flag" and decision.context["input"] == expected
    assert pay.status == "waiting" and run.status == RunStatus.PAUSED
    assert Gate.objects.get(step_run=pay).reason == "large payment"
    assert replay_decisions(run).ok


def test_when_false_skips_the_step_and_the_join_after_it_runs(tenant, advance):
    run = launch(tenant, advance, [
        *AGENT,
        {"id": "other", "type": "noop", "after": ["plan"], "when": "steps.plan.output.amount == 0"},
        {"id": "join", "type": ECHO, "after": ["pay", "other"],
         "input": {"pay": "=steps.pay.status", "other": "=steps.other.status"}},
    ])
    report(tenant, advance, run, "plan", {"amount": 0, "payee": "X"})
    assert statuses(run) == {"plan": "succeeded", "pay": "skipped", "other": "succeeded",
                             "join": "succeeded"}
    assert run.status == RunStatus.COMPLETED
    closed = events(run, "FC-STEP-005")
    assert closed == [{"step_id": "pay", "status": "skipped", "reason": "condition false"}]
    assert steps(run)["join"].output["input"] == {"pay": "skipped", "other": "succeeded"}
    assert not PolicyDecision.objects.filter(step_run__step_id="pay").exists()


def test_a_map_runs_one_decided_receipted_instance_per_item_in_order(tenant, advance):
    run = launch(tenant, advance, [
        {"id": "plan", "type": "external"},
        {"id": "notify", "type": ECHO, "map": "steps.plan.output.recipients",
         "input": {"to": "=item", "n": "=index", "fixed": 1}},
        {"id": "done", "type": ECHO, "input": {"sent": "=steps.notify.output.items.size()"}},
    ], output={"sent": "=steps.done.output.input.sent", "first": "=steps.notify.output"})
    report(tenant, advance, run, "plan", {"recipients": ["a@x", "b@x", "c@x"]})
    found = steps(run)
    assert list(found) == ["plan", "notify", "notify[0]", "notify[1]", "notify[2]", "done"]
    assert all(s.status == "succeeded" for s in found.values())
    assert [found[f"notify[{n}]"].input["to"] for n in range(3)] == ["a@x", "b@x", "c@x"]
    assert found["notify[2]"].input == {"to": "c@x", "n": 2, "fixed": 1}
    items = found["notify"].output["items"]
    assert [i["input"]["to"] for i in items] == ["a@x", "b@x", "c@x"]
    assert found["notify"].input == {"items": ["a@x", "b@x", "c@x"]}
    decided = set(PolicyDecision.objects.filter(step_run__run=run)
                  .values_list("step_run__step_id", flat=True))
    assert decided == {"plan", "notify[0]", "notify[1]", "notify[2]", "done"}
    assert all(s.receipt_hash for s in found.values())
    assert run_receipts_verify(run)["verified"] is True
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"sent": 3, "first": found["notify"].output}
    started = [e for e in events(run, "FC-STEP-001") if e["step_id"] == "notify"]
    assert started[0]["instances"] == ["notify[0]", "notify[1]", "notify[2]"]


def test_max_concurrency_bounds_the_instances_running_at_once(tenant, advance):
    run = launch(tenant, advance, [
        {"id": "fan", "type": "external", "map": "run.input.xs", "max_concurrency": 2},
    ], input={"xs": [10, 20, 30]})
    assert statuses(run) == {"fan": "running", "fan[0]": "running", "fan[1]": "running",
                             "fan[2]": "pending"}
    report(tenant, advance, run, "fan[1]", {"v": 20})
    assert statuses(run)["fan[2]"] == "running"
    report(tenant, advance, run, "fan[2]", {"v": 30})
    report(tenant, advance, run, "fan[0]", {"v": 10})
    assert run.status == RunStatus.COMPLETED
    assert steps(run)["fan"].output == {"items": [{"v": 10}, {"v": 20}, {"v": 30}]}


def test_an_instance_that_fails_for_good_fails_the_map_and_the_run(tenant, advance):
    run = launch(tenant, advance, [
        {"id": "fan", "type": "external", "map": "run.input.xs",
         "retry": {"max_attempts": 2, "backoff": 0}},
        {"id": "after", "type": "noop"},
    ], input={"xs": [1, 2]})
    report(tenant, advance, run, "fan[0]", None, status="failed")
    retried = steps(run)["fan[0]"]  # its own retries: attempt 2, decided again
    assert (retried.status, retried.attempt) == ("running", 2)
    assert run.status == RunStatus.RUNNING
    assert PolicyDecision.objects.filter(step_run=retried).count() == 2
    report(tenant, advance, run, "fan[0]", None, status="failed")
    found = steps(run)
    assert found["fan[0]"].status == "failed" and found["fan[0]"].attempt == 2
    assert found["fan"].status == "failed"
    assert found["fan"].error["code"] == "map_instance_failed"
    assert found["fan[1]"].error["code"] == "run_ended"
    assert found["after"].status == "cancelled"
    assert run.status == RunStatus.FAILED


def test_an_empty_map_succeeds_with_no_items(tenant, advance):
    run = launch(tenant, advance, [
        {"id": "fan", "type": "noop", "map": "run.input.xs"},
        {"id": "next", "type": ECHO, "input": {"n": "=steps.fan.output.items.size()"}},
    ], input={"xs": []})
    assert statuses(run) == {"fan": "succeeded", "next": "succeeded"}
    assert steps(run)["fan"].output == {"items": []}
    assert run.status == RunStatus.COMPLETED


@pytest.mark.parametrize(("step", "code", "detail"), [
    ({"id": "pay", "type": ECHO, "input": {"amount": "=steps.plan.output.missing"}},
     "expression_error", "no such key"),
    ({"id": "pay", "type": ECHO, "when": "steps.plan.output.amount"},
     "expression_error", "not a boolean"),
    ({"id": "pay", "type": ECHO, "map": "steps.plan.output.amount"},
     "expression_error", "not a list"),
    ({"id": "pay", "type": ECHO, "map": "steps.plan.output.many"},
     "map_too_many_items", "more than FCORE_MAP_MAX_ITEMS (3)"),
])
def test_a_failing_expression_fails_the_step_unretried_and_the_run_closed(
        tenant, advance, settings, step, code, detail):
    settings.FCORE_MAP_MAX_ITEMS = 3
    run = launch(tenant, advance, [
        {"id": "plan", "type": "external"},
        {**step, "retry": {"max_attempts": 3, "backoff": 0}},
        {"id": "later", "type": "noop"},
    ])
    report(tenant, advance, run, "plan", {"amount": 5, "many": [1, 2, 3, 4]})
    found = steps(run)
    assert found["pay"].status == "failed" and found["pay"].attempt == 1
    assert found["pay"].error["code"] == code and detail in found["pay"].error["detail"]
    assert found["later"].status == "cancelled"
    assert run.status == RunStatus.FAILED and run.status_reason.startswith(f"{code} at pay")
    failed = [e for e in events(run, "FC-STEP-003") if e["step_id"] == "pay"]
    assert failed[0]["error"]["code"] == code and failed[0]["receipt_hash"]
    assert not events(run, "FC-STEP-004")
    assert not PolicyDecision.objects.filter(step_run=found["pay"]).exists()


def test_a_failing_workflow_output_fails_the_run(tenant, advance):
    run = launch(tenant, advance, [{"id": "a", "type": "noop"}],
                 output={"x": "=steps.a.output.nope"})
    assert run.status == RunStatus.FAILED
    assert run.status_reason.startswith("expression_error in the workflow output")


def test_an_external_instance_is_reported_through_the_api(api, pt004):
    definition_publish(tenant=pt004, name="fan_api", actor="user:priya", steps=[
        {"id": "fan", "type": "external", "map": "run.input.xs"}])
    run_id = api.post("/workflows/runs", {"workflow": "fan_api", "input": {"xs": [1]}}
                      ).json()["run_id"]
    response = api.patch(f"/workflows/runs/{run_id}/steps/fan%5B0%5D",
                         {"status": "succeeded", "output": {"ok": 1}})
    assert response.status_code == 200, response.json()
    body = api.get(f"/workflows/runs/{run_id}").json()
    assert body["status"] == "completed"
    assert [s["step_id"] for s in body["steps"]] == ["fan", "fan[0]"]


def _queries(tenant, advance, name, steps_spec) -> int:
    definition_publish(tenant=tenant, name=name, actor="user:priya", steps=steps_spec)
    with CaptureQueriesContext(connection) as queries, advance():
        run, _ = run_create(tenant=tenant, workflow=name, input={}, actor="user:olivia")
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    return len(queries)


# Statements of a run of 3 and of 6 noop steps with static input, eager, measured on the
# engine before the workflow language (d1e466b) with this same test: on SQLite and on
# PostgreSQL alike — plus one per run since the run webhooks: the seal reads the tenant's
# webhook endpoints to write `run.*` deliveries in its transaction (gates.notify.run_notify).
STRAIGHT_LINE_STATEMENTS = (42 + 1, 70 + 1)


def test_a_straight_line_without_the_language_costs_what_it_did(tenant, advance):
    """No expression, no when, no map: the engine does no more than before per step."""
    line = [{"id": f"s{i}", "type": "noop", "input": {"k": i}} for i in range(6)]
    measured = (_queries(tenant, advance, "short", line[:3]),
                _queries(tenant, advance, "long", line))
    assert measured == STRAIGHT_LINE_STATEMENTS


def test_the_evidence_pack_of_a_map_run_with_an_output_verifies(api, pt004):
    from audit.verify_pack import verify_pack

    definition_publish(tenant=pt004, name="fan_pack", actor="user:priya", steps=[
        {"id": "fan", "type": ECHO, "map": "run.input.xs", "input": {"x": "=item"}},
        {"id": "skip", "type": "noop", "when": "false"},
    ], output={"n": "=steps.fan.output.items.size()", "skip": "=steps.skip.status"})
    run_id = api.post("/workflows/runs", {"workflow": "fan_pack", "input": {"xs": [1, 2]}}
                      ).json()["run_id"]
    body = api.get(f"/workflows/runs/{run_id}").json()
    assert body["status"] == "completed" and body["output"] == {"n": 2, "skip": "skipped"}
    pack = api.get(f"/workflows/runs/{run_id}/evidence").json()
    assert pack["definition"]["output"]["n"] == "=steps.fan.output.items.size()"
    verify_pack(pack)  # raises at the first failure


def test_the_worked_example_end_to_end_through_the_api(api, approver, pt004):
    """docs/examples/agent_payment.yaml: the plan's amount is what the payment is decided
    on and receives; notifications are mapped over the plan's recipients."""
    from tests.conftest import load_bundle

    load_bundle("docs/examples/agent_payment.yaml")
    run_id = api.post("/workflows/runs", {"workflow": "agent_payment", "input": {}}
                      ).json()["run_id"]
    plan = {"amount": 25000, "payee": "ACME", "recipients": ["a@x", "b@x", "c@x"]}
    assert api.patch(f"/workflows/runs/{run_id}/steps/plan",
                     {"status": "succeeded", "output": plan}).status_code == 200
    body = api.get(f"/workflows/runs/{run_id}").json()
    assert body["status"] == "paused"
    gate = body["gates"][0]
    assert gate["step_id"] == "pay" and gate["reason"] == "agent plans a payment above 10,000"
    decision = [d for d in body["decisions"] if d["step_id"] == "pay"][0]
    assert decision["decision"] == "flag"
    assert approver.patch(f"/workflows/runs/{run_id}/gates/{gate['gate_id']}",
                          {"decision": "approve"}).status_code == 200
    assert api.patch(f"/workflows/runs/{run_id}/steps/pay",
                     {"status": "succeeded", "output": {"paid": 25000}}).status_code == 200
    body = api.get(f"/workflows/runs/{run_id}").json()
    assert body["status"] == "completed", body["status_reason"]
    (child_id,) = body["children"]
    child = api.get(f"/workflows/runs/{child_id}").json()
    assert child["workflow"] == "archive_flow" and child["input"]["payee"] == "ACME"
    assert body["output"] == {"paid": True, "payment": {"paid": 25000}, "notified": 3,
                              "archive": {"run_id": child_id,
                                          "workflow_hash": child["workflow_hash"],
                                          "output": {"archived": {"payment": {"paid": 25000},
                                                                  "payee": "ACME"}}}}
    notified = [s for s in body["steps"] if s["step_id"].startswith("notify[")]
    assert [s["output"]["input"]["to"] for s in notified] == ["a@x", "b@x", "c@x"]
    run = Run.objects.get(pk=run_id)
    assert steps(run)["pay"].input["amount"] == 25000
    assert replay_decisions(run).ok


def test_the_evidence_pack_of_a_run_failed_by_an_expression_verifies(api, pt004):
    from audit.verify_pack import verify_pack

    definition_publish(tenant=pt004, name="bad_expr", actor="user:priya", steps=[
        {"id": "a", "type": "noop"},
        {"id": "b", "type": "noop", "input": {"x": "=steps.a.output.nope"}},
        {"id": "fan", "type": "noop", "map": "[1, 2]"}])
    run_id = api.post("/workflows/runs", {"workflow": "bad_expr", "input": {}}).json()["run_id"]
    body = api.get(f"/workflows/runs/{run_id}").json()
    assert body["status"] == "failed"
    b = [s for s in body["steps"] if s["step_id"] == "b"][0]
    assert b["status"] == "failed" and b["error"]["code"] == "expression_error"
    assert b["error"]["retryable"] is False and "input.x" in b["error"]["detail"]
    verify_pack(api.get(f"/workflows/runs/{run_id}/evidence").json())
