"""The SDK's executor loop (`FCClient.work`, `AsyncFCClient.work`): against the real API
in-process (httpx's WSGI transport), and against a scripted transport for back-off, lease
loss and SIGTERM."""

import asyncio
import json
import os
import signal
import threading
import time

import httpx
import pytest
from django.core.wsgi import get_wsgi_application

from fcore.clients import api_client_create
from fcore.interfaces.client import AsyncFCClient, FCClient
from fcore.interfaces.work import StepFailed, Task
from runs.models import Run, StepRun
from runs.services import run_create

SCOPES = "runs:read runs:write tasks:claim"


@pytest.fixture
def fc(pt004):
    client, secret = api_client_create(tenant=pt004, name="exec", scopes=SCOPES.split(),
                                       actor="system:test")
    with FCClient("http://testserver", client.kid, secret, pt004.slug, "exec",
                  transport=httpx.WSGITransport(app=get_wsgi_application())) as sdk:
        yield sdk


def start_run(tenant, amount=5):
    return run_create(tenant=tenant, workflow="pt004_execution_spine",
                      input={"amount": amount}, actor="user:olivia")[0]


@pytest.mark.django_db(transaction=True)
def test_work_runs_a_five_step_workflow_with_idempotency_keys(fc, pt004):
    run = start_run(pt004)
    seen = []

    def handler(task: Task):
        seen.append(task.idempotency_key)
        return {"done": task.step_id, "amount": task.input["amount"]}

    assert fc.work(handler, max_tasks=5, wait_s=1, lease_s=5, handle_signals=False) == 5
    run.refresh_from_db()
    assert run.status == "completed"
    assert seen == [f"{run.run_id}:step_{i}:1" for i in range(1, 6)]
    assert StepRun.objects.get(run=run, step_id="step_3").output == {"done": "step_3",
                                                                     "amount": 5}


@pytest.mark.django_db(transaction=True)
def test_a_failing_handler_fails_the_step(fc, pt004):
    run = start_run(pt004)

    def handler(task):
        raise StepFailed({"code": "card_declined", "retryable": False})

    assert fc.work(handler, max_tasks=1, wait_s=0, handle_signals=False) == 1
    step = StepRun.objects.get(run=run, step_id="step_1")
    assert step.status == "failed" and step.error["code"] == "card_declined"
    assert Run.objects.get(pk=run.pk).status == "failed"


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_keeps_a_slow_handler_s_lease(fc, pt004, settings):
    run = start_run(pt004)

    def slow(task):
        time.sleep(7)  # longer than the 5 s lease: only the heartbeats keep it
        assert not task.lease_lost.is_set()
        return {"slow": True}

    from runs import claims
    threading.Timer(6, claims.leases_expire).start()  # a sweep while it runs
    assert fc.work(slow, max_tasks=1, wait_s=0, lease_s=5, handle_signals=False) == 1
    assert StepRun.objects.get(run=run, step_id="step_1").status == "succeeded"


# --- scripted transport --------------------------------------------------------------------

TASK = {"run_id": "r1", "step_id": "s1", "attempt": 2, "workflow": "w", "step_type": "external",
        "input": {"x": 1}, "lease_token": "tok", "lease_expires_at": "2026-01-01T00:00:00Z"}


class Script:
    """Answers claims from a list (then empty), records reports."""

    def __init__(self, claims, report_status=200):
        self.claims, self.reports, self.report_status = list(claims), [], report_status
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.url.path.endswith("/tasks/claim"):
                answer = self.claims.pop(0) if self.claims else {"tasks": []}
                if isinstance(answer, int):
                    return httpx.Response(answer, json={"code": "error", "detail": "down"})
                return httpx.Response(200, json=answer)
            if request.url.path.endswith("/heartbeat"):
                return httpx.Response(200, json={})
            self.reports.append(json.loads(request.content))
            return httpx.Response(self.report_status, json={"code": "lease_lost",
                                                            "detail": "lost"}
                                  if self.report_status == 409 else {})


def scripted(script, cls=FCClient):
    return cls("http://fc.test", "kid", "secret", "t", "exec",
               transport=httpx.MockTransport(script))


def test_the_loop_backs_off_when_claims_fail_and_reports_with_the_lease(monkeypatch):
    from fcore.interfaces import work as work_module
    monkeypatch.setattr(work_module, "BACKOFF_START_S", 0.01)
    script = Script([503, 503, {"tasks": [TASK]}])
    keys = []
    assert scripted(script).work(lambda t: keys.append(t.idempotency_key) or {"ok": 1},
                                 max_tasks=1, handle_signals=False) == 1
    assert keys == ["r1:s1:2"]
    assert script.reports == [{"status": "succeeded", "output": {"ok": 1}, "error": None,
                               "attempt": 2, "lease_token": "tok"}]


def test_a_refused_report_is_dropped_not_retried():
    script = Script([{"tasks": [TASK]}], report_status=409)
    assert scripted(script).work(lambda t: {}, max_tasks=1, handle_signals=False) == 1
    assert len(script.reports) == 1


def test_sigterm_finishes_the_task_in_hand_then_stops():
    script = Script([{"tasks": [TASK]}, {"tasks": [dict(TASK, step_id="s2")]}])

    def handler(task):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        return {"ok": True}

    assert scripted(script).work(handler, wait_s=0) == 1  # s2 is never claimed
    assert [r["status"] for r in script.reports] == ["succeeded"]
    assert script.claims  # the second claim answer is still there
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_async_loop_handles_sync_and_async_handlers():
    script = Script([{"tasks": [TASK, dict(TASK, step_id="s2")]}])

    async def async_handler(task):
        await asyncio.sleep(0)
        if task.step_id == "s2":
            raise StepFailed("no")
        return {"async": True}

    async def scenario():
        client = scripted(script, AsyncFCClient)
        try:
            return await client.work(async_handler, max=2, max_tasks=2, handle_signals=False)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == 2
    assert [(r["status"], r["output"], r["error"]) for r in script.reports] == [
        ("succeeded", {"async": True}, None), ("failed", None, {"detail": "no"})]
