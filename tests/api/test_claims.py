"""Executors claim external steps (DESIGN §12): claim, lease, heartbeat, report, expiry,
redelivery, bad input."""

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from fcore.clients import api_client_create
from runs import claims
from runs.bundles import bundle_load
from runs.models import StepLease, StepRun
from tests.conftest import ALL_SCOPES, Api

pytestmark = pytest.mark.django_db
SCOPES = ALL_SCOPES + " tasks:claim"
CLAIM = "/workflows/tasks/claim"
TYPED = {"tenant": "tenant_omega", "workflows": [{"name": "typed", "steps": [
    {"id": "pay", "type": "external:payments", "input": {"to": "=run.input.to"}},
    {"id": "mail", "type": "external:mail", "after": ["pay"]},
]}]}


@pytest.fixture
def executor(pt004, advance):
    client, secret = api_client_create(tenant=pt004, name="executor", scopes=SCOPES.split(),
                                       actor="system:test")
    return Api(APIClient(), client.kid, secret, pt004.slug, advance, sub="exec-1",
               scope=SCOPES)


@pytest.fixture
def typed(pt004):
    bundle_load(TYPED, actor="system:test")


def new_run(api, workflow="pt004_execution_spine", **input):
    response = api.post("/workflows/runs", {"workflow": workflow, "input": input})
    assert response.status_code == 201, response.json()
    return response.json()["run_id"]


def claim(api, **body):
    response = api.post(CLAIM, body)
    assert response.status_code == 200, response.json()
    return response.json()["tasks"]


def report(api, task, status="succeeded", **extra):
    body = {"status": status, "output": {"by": api.sub}, **extra}
    if "lease_token" not in extra and task.get("lease_token"):
        body["lease_token"] = task["lease_token"]
    return api.patch(f"/workflows/runs/{task['run_id']}/steps/{task['step_id']}", body)


def codes(run_id):
    return list(AuditEvent.objects.filter(stream__name=f"run/{run_id}")
                .order_by("seq").values_list("code", flat=True))


def test_claim_gives_a_running_external_step_with_its_input_and_lease(executor):
    run_id = new_run(executor, amount=5)
    [task] = claim(executor, lease_s=30)
    assert (task["run_id"], task["step_id"], task["attempt"]) == (run_id, "step_1", 1)
    assert task["workflow"] == "pt004_execution_spine" and task["step_type"] == "external"
    assert task["input"] == {"amount": 5}
    assert len(task["lease_token"]) > 30
    lease = StepLease.objects.get()
    assert lease.token_hash == claims.token_hash(task["lease_token"])
    assert task["lease_token"] not in lease.token_hash  # stored hashed only
    assert lease.holder == "client:exec-1"
    assert codes(run_id)[-1] == "FC-STEP-006"
    # held: nobody else gets it
    assert claim(executor.as_sub("exec-2")) == []
    assert report(executor, task).status_code == 200
    assert not StepLease.objects.filter(step__step_id="step_1").exists()
    # the report started step_2: claimable
    [second] = claim(executor)
    assert second["step_id"] == "step_2"


def test_claim_max_and_filters(executor, typed):
    runs = [new_run(executor, amount=i) for i in range(3)]
    typed_run = new_run(executor, "typed", to="bob")
    got = claim(executor, max=2, workflows=["pt004_execution_spine"])
    assert len(got) == 2 and {t["run_id"] for t in got} <= set(runs)
    [pay] = claim(executor, step_types=["external:payments"], max=10)
    assert (pay["run_id"], pay["step_id"], pay["input"]) == (typed_run, "pay", {"to": "bob"})
    assert claim(executor, step_types=["external:mail"]) == []  # not running yet
    assert claim(executor, step_types=["external:unused"]) == []  # matches nothing
    assert claim(executor, workflows=["no_such_workflow"]) == []
    assert len(claim(executor, max=50)) == 1  # the third pt004 run's step_1


def test_unclaimed_step_is_reported_without_a_lease(executor):
    """PT-004's harness: report steps nobody claimed, with no token, as before."""
    run_id = new_run(executor, amount=5)
    for i in range(1, 6):
        response = executor.patch(f"/workflows/runs/{run_id}/steps/step_{i}",
                                  {"status": "succeeded", "output": {"i": i}})
        assert response.status_code == 200, response.json()
    assert response.json()["status"] == "completed"


def test_claimed_step_needs_its_own_current_lease(executor):
    new_run(executor, amount=5)
    [task] = claim(executor)
    no_token = executor.patch(f"/workflows/runs/{task['run_id']}/steps/step_1",
                              {"status": "succeeded"})
    assert no_token.status_code == 409 and no_token.json()["code"] == "lease_lost"
    foreign = report(executor, task, lease_token="x" * 43)
    assert foreign.status_code == 409 and foreign.json()["code"] == "lease_lost"
    assert StepRun.objects.get(step_id="step_1").status == "running"
    assert report(executor, task).status_code == 200


def test_heartbeat_extends_and_refuses_after_expiry(executor):
    new_run(executor, amount=5)
    [task] = claim(executor, lease_s=5)
    path = f"/workflows/runs/{task['run_id']}/steps/step_1/heartbeat"
    before = StepLease.objects.get().expires_at
    beat = executor.post(path, {"lease_token": task["lease_token"], "lease_s": 600})
    assert beat.status_code == 200, beat.json()
    assert StepLease.objects.get().expires_at > before + timedelta(seconds=500)
    wrong = executor.post(path, {"lease_token": "nope"})
    assert wrong.status_code == 409 and wrong.json()["code"] == "lease_lost"
    StepLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    late = executor.post(path, {"lease_token": task["lease_token"]})
    assert late.status_code == 409 and late.json()["code"] == "lease_lost"
    late_report = report(executor, task)
    assert late_report.status_code == 409 and late_report.json()["code"] == "lease_lost"
    unknown = executor.post(f"/workflows/runs/{task['run_id']}/steps/nope/heartbeat",
                            {"lease_token": task["lease_token"]})
    assert unknown.status_code == 404


def expire_all(executor):
    StepLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with executor.advance():
        return claims.leases_expire()


def test_a_claim_ends_the_expired_leases_of_its_own_tenant_only(executor, other_tenant,
                                                                advance):
    client, secret = api_client_create(tenant=other_tenant, name="executor",
                                       scopes=SCOPES.split(), actor="system:test")
    sigma = Api(APIClient(), client.kid, secret, other_tenant.slug, advance, sub="exec-s",
                scope=SCOPES)
    omega_run, sigma_run = new_run(executor, amount=5), new_run(sigma, amount=5)
    [omega_task], [sigma_task] = claim(executor), claim(sigma)
    StepLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    [sigma_again] = claim(sigma)  # its own expired lease ended: the step is its again
    assert (sigma_again["run_id"], sigma_again["step_id"]) == (sigma_run, sigma_task["step_id"])
    assert codes(sigma_run)[-2:] == ["FC-STEP-007", "FC-STEP-006"]
    assert StepLease.objects.filter(run_id=omega_run).exists()  # not sigma's to end
    assert codes(omega_run)[-1] == "FC-STEP-006"
    [again] = claim(executor)
    assert (again["run_id"], again["attempt"]) == (omega_task["run_id"], omega_task["attempt"])
    assert codes(omega_run)[-2:] == ["FC-STEP-007", "FC-STEP-006"]


def test_expired_lease_is_claimable_again_same_attempt_audited(executor):
    run_id = new_run(executor, amount=5)
    [first] = claim(executor.as_sub("dies"))
    assert expire_all(executor) == 1
    assert codes(run_id)[-1] == "FC-STEP-007"
    [again] = claim(executor.as_sub("finishes"))
    assert (again["step_id"], again["attempt"]) == ("step_1", first["attempt"])
    assert again["lease_token"] != first["lease_token"]
    assert report(executor, first).json()["code"] == "lease_lost"  # the old holder
    assert report(executor, again).status_code == 200
    step = StepRun.objects.get(run_id=run_id, step_id="step_1")
    assert (step.status, step.redeliveries, step.output) == ("succeeded", 1, {"by": "exec-1"})
    assert codes(run_id).count("FC-STEP-002") == 1


def test_after_max_redeliveries_the_attempt_fails_lease_lost(executor, settings):
    settings.FCORE_STEP_MAX_REDELIVERIES = 2
    run_id = new_run(executor, amount=5)
    for _ in range(3):
        assert len(claim(executor)) == 1
        expire_all(executor)
    step = StepRun.objects.get(run_id=run_id, step_id="step_1")
    assert step.status == "failed" and step.error["code"] == "lease_lost"
    assert executor.get(f"/workflows/runs/{run_id}").json()["status"] == "failed"
    assert codes(run_id).count("FC-STEP-007") == 2
    assert claim(executor) == []


def test_stale_lease_of_an_ended_step_is_dropped_quietly(executor):
    run_id = new_run(executor, amount=5)
    claim(executor)
    executor.patch(f"/workflows/runs/{run_id}/status", {"status": "cancelled"})
    before = codes(run_id)
    assert expire_all(executor) == 1
    assert codes(run_id) == before and not StepLease.objects.exists()


def test_claim_racing_a_cancel(executor):
    """A cancelled run's step is not handed out; a claim taken before the cancel ends in
    a clear 409 on report, and nothing is recorded twice."""
    run_id = new_run(executor, amount=5)
    [task] = claim(executor)
    executor.patch(f"/workflows/runs/{run_id}/status", {"status": "cancelled"})
    late = report(executor, task)
    assert late.status_code == 409 and late.json()["code"] == "invalid_transition"
    other = new_run(executor, amount=6)
    executor.patch(f"/workflows/runs/{other}/status", {"status": "cancelled"})
    assert claim(executor) == []


@pytest.mark.parametrize("body, field", [
    ({"max": 0}, "max"), ({"max": 10_000}, "max"), ({"max": "many"}, "max"),
    ({"wait_s": 3600}, "wait_s"), ({"wait_s": -1}, "wait_s"),
    ({"wait_s": False}, "wait_s"), ({"wait_s": "5"}, "wait_s"),
    ({"lease_s": 4}, "lease_s"), ({"lease_s": 601}, "lease_s"),
    ({"step_types": ["noop"]}, "step_types"), ({"step_types": ["bogus"]}, "step_types"),
    ({"step_types": "external"}, "step_types"), ({"workflows": [{"a": 1}]}, "workflows"),
])
def test_bad_claims_are_400(executor, body, field):
    response = executor.post(CLAIM, body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]


def test_claim_needs_the_tasks_scope(executor):
    without = " ".join(scope for scope in ALL_SCOPES.split() if scope != "tasks:claim")
    response = executor.as_sub("exec-1", scope=without).post(CLAIM, {})
    assert response.status_code == 403


def test_bad_heartbeats_are_4xx(executor):
    run_id = new_run(executor, amount=5)
    path = f"/workflows/runs/{run_id}/steps/step_1/heartbeat"
    assert executor.post(path, {}).status_code == 400
    assert executor.post(path, {"lease_token": "t", "lease_s": 0}).status_code == 400
    unclaimed = executor.post(path, {"lease_token": "t"})
    assert unclaimed.status_code == 409 and unclaimed.json()["code"] == "lease_lost"
    other = executor.post("/workflows/runs/00000000-0000-0000-0000-000000000000/steps/"
                          "step_1/heartbeat", {"lease_token": "t"})
    assert other.status_code == 404


def test_typed_external_steps_are_reported_like_external(executor, typed):
    run_id = new_run(executor, "typed", to="x")
    response = executor.patch(f"/workflows/runs/{run_id}/steps/pay", {"status": "succeeded"})
    assert response.status_code == 200, response.json()
    [mail] = claim(executor, step_types=["external:mail"])
    assert report(executor, mail).json()["status"] == "completed"


def claim_waiting():
    """A claim of tenant_omega waiting (in a thread, started 0.5 s ago): the thread and
    the dict its `tasks` and the seconds it `took` go into."""
    from fcore.models import Tenant

    tenant, result = Tenant.objects.get(slug="tenant_omega"), {}

    def waiting():
        started = time.monotonic()
        try:
            result["tasks"] = claims.tasks_claim(tenant=tenant, actor="client:w",
                                                 wait_s=20, lease_s=30)
            result["took"] = time.monotonic() - started
        finally:
            connections.close_all()

    thread = threading.Thread(target=waiting)
    thread.start()
    time.sleep(0.5)
    return thread, result


@pytest.mark.django_db(transaction=True)
def test_claim_with_wait_returns_when_work_arrives(executor, monkeypatch):
    """A waiting claim wakes on the commit that starts an external step, not at wait_s nor
    at a periodic re-check (pushed out of reach here)."""
    from runs import wakeups

    monkeypatch.setattr(wakeups, "RECHECK_S", 60)
    thread, result = claim_waiting()
    run_id = new_run(executor, amount=5)
    thread.join(25)
    assert [t["step_id"] for t in map(claims.ClaimedTask.as_dict, result["tasks"])] == [
        "step_1"]
    assert result["tasks"][0].run_id == run_id
    assert result["took"] < 5, result


@pytest.mark.django_db(transaction=True)
def test_on_the_embedded_default_another_process_wakes_a_waiting_claim(
        executor, monkeypatch, settings):
    """Without Redis the wake-up is a stamp file (`fcore.wakeups`), so a step started by
    another process (the worker, another web worker) wakes the claim: here the in-process
    announcement is switched off and a separate process touches the tenant's stamp."""
    from fcore import wakeups as fcore_wakeups
    from fcore.models import Tenant
    from runs import wakeups
    from runs.engine import steps

    settings.FCORE_WAKEUP_URL = ""
    monkeypatch.setattr(wakeups, "RECHECK_S", 60)
    monkeypatch.setattr(steps, "steps_ready_announce", lambda tenant_id: None)
    tenant = Tenant.objects.get(slug="tenant_omega")
    thread, result = claim_waiting()
    run_id = new_run(executor, amount=5)
    thread.join(1)
    assert thread.is_alive(), "woken without an announcement"
    stamp = fcore_wakeups._stamp(wakeups._stream(tenant.id))
    subprocess.run([sys.executable, "-c", "import pathlib, sys; p = pathlib.Path(sys.argv[1]);"
                    " p.parent.mkdir(parents=True, exist_ok=True); p.touch()", str(stamp)],
                   check=True)
    thread.join(25)
    assert [task.run_id for task in result["tasks"]] == [run_id]
    assert result["took"] < 5, result


def test_claim_with_wait_returns_empty_after_wait_s(executor):
    started = time.monotonic()
    assert claim(executor, wait_s=0.3) == []
    assert 0.25 < time.monotonic() - started < 3
