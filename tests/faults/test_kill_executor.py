"""kill -9 of an external executor in the middle of a step (issue 20 #5), with real
processes: gunicorn serving the API on the test database, and executor processes running
the SDK's `work` loop (`tests.faults.executor`).

Executor A claims the first step of a five-step external workflow with a 5 s lease and is
killed -9 inside its handler. Executor B, started then, keeps claiming: once A's lease
expires (`runs.claims.leases_expire`, run by every claim) the step is claimable again,
same attempt (`FC-STEP-007`), and B executes it and the four steps after it. The run
completes, every step's result is recorded once (B's), A's attempt is never recorded, and
the audit stream and receipts verify.
"""

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from audit.models import AuditEvent
from audit.verify import audit_verify
from fcore.clients import api_client_create
from fcore.management.processes import web_argv
from runs.models import Run, StepRun
from runs.services import run_create
from runs.verification import run_receipts_verify
from tests.install import Tree, free_port
from tests.worker import _child_env

from .helpers import TENANT, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = "fault_external"
STEPS = [f"s{i}" for i in range(1, 6)]
LEASE_S = 5


@pytest.fixture
def external(tenant):
    from runs.bundles import bundle_load

    bundle_load({"tenant": TENANT, "workflows": [{"name": WORKFLOW, "steps": [
        {"id": s, "type": "external:fault", **({"after": [STEPS[i - 1]]} if i else {})}
        for i, s in enumerate(STEPS)]}]}, actor="system:test", source="faults")
    return tenant


def _executor(tmp_path, sub: str, creds: tuple, url: str, hold_s: float) -> Tree:
    kid, secret = creds
    env = _child_env({"FC_URL": url, "FC_KID": kid, "FC_SECRET": secret, "FC_TENANT": TENANT,
                      "FC_SUB": sub, "FC_JOURNAL": str(tmp_path / "journal"),
                      "FC_HOLD_S": str(hold_s), "FC_LEASE_S": str(LEASE_S),
                      "FC_WORKFLOW": WORKFLOW})
    return Tree([sys.executable, "-m", "tests.faults.executor"], env=env, cwd=ROOT,
                log_path=tmp_path / f"{sub}.log")


def _journal(tmp_path) -> list[list[str]]:
    path = tmp_path / "journal"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_killed_executor_s_step_is_finished_by_another_once(external, tmp_path):
    client, secret = api_client_create(tenant=external, name="executors",
                                       scopes=["runs:read", "runs:write", "tasks:claim"],
                                       actor="system:test")
    port = free_port()
    web = Tree(web_argv(host="127.0.0.1", port=port, workers=1),
               env=_child_env({"PORT": str(port)}), cwd=ROOT, log_path=tmp_path / "web.log")
    processes = [web]
    try:
        web.wait_healthy(port)
        url = f"http://127.0.0.1:{port}"
        run = run_create(tenant=external, workflow=WORKFLOW, input={"n": 1},
                         actor="user:faults")[0]
        first = _executor(tmp_path, "exec-A", (client.kid, secret), url, hold_s=120)
        processes.append(first)
        wait_until(lambda: any(e[:2] == ["exec-A", "start"] for e in _journal(tmp_path)),
                   timeout=60, what=lambda: first.output()[-2000:])
        os.killpg(first.proc.pid, signal.SIGKILL)  # kill -9, mid-step
        first.proc.wait(timeout=10)
        killed_at = time.monotonic()
        second = _executor(tmp_path, "exec-B", (client.kid, secret), url, hold_s=0.1)
        processes.append(second)
        wait_until(lambda: Run.objects.get(pk=run.pk).status in ("completed", "failed"),
                   timeout=90, what=lambda: second.output()[-2000:])
        took = time.monotonic() - killed_at
    finally:
        for process in processes:
            process.close()
    run.refresh_from_db()
    assert run.status == "completed", run.status_reason
    assert took >= LEASE_S - 1.5  # not before A's lease ran out
    steps = {s.step_id: s for s in StepRun.objects.filter(run=run)}
    assert {s: (steps[s].status, steps[s].attempt, steps[s].output) for s in STEPS} == {
        s: ("succeeded", 1, {"by": "exec-B"}) for s in STEPS}
    assert steps["s1"].redeliveries == 1
    journal = _journal(tmp_path)
    key = f"{run.run_id}:s1:1"
    assert [e[:3] for e in journal if e[2] == key] == [
        ["exec-A", "start", key], ["exec-B", "start", key], ["exec-B", "end", key]]
    events = AuditEvent.objects.filter(stream__name=run.stream_name)
    recorded = Counter(e.data["step_id"] for e in events.filter(code="FC-STEP-002"))
    assert recorded == dict.fromkeys(STEPS, 1)
    assert not events.filter(code="FC-STEP-003").exists()
    assert [e.actor for e in events.filter(code="FC-STEP-006", data__step_id="s1")
            .order_by("seq")] == ["client:exec-A", "client:exec-B"]
    assert events.filter(code="FC-STEP-007").count() == 1
    assert run_receipts_verify(run)["verified"]
    chain = audit_verify(stream=run.stream_name, checkpoints=False)
    assert chain.ok and chain.streams == 1, chain.failures
