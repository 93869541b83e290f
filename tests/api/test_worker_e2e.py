"""End to end with real processes: a live HTTP server, a Celery worker subprocess over the
configured broker (Redis on the PostgreSQL run, the file-system broker on SQLite), and the
`proof` command as the outside client."""

import json
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from fcore import celery_app
from runs.models import Run
from tests.conftest import ALL_SCOPES, load_bundle
from tests.worker import Worker, require_broker, require_worker_mode

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(tmp_path):
    require_worker_mode()
    require_broker()
    celery_app.control.purge()
    proc = Worker(log_path=tmp_path / "worker.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def credentials(db):
    load_bundle("docs/examples/pt004.yaml")
    load_bundle("docs/examples/demo.yaml")
    from fcore.clients import api_client_create
    from fcore.models import Tenant

    client, secret = api_client_create(tenant=Tenant.objects.get(slug="tenant_omega"),
                                       name="proof", scopes=ALL_SCOPES.split(),
                                       actor="system:test")
    return client.kid, secret


def test_proof_command_passes_against_live_server_and_worker(live_server, worker,
                                                             credentials, tmp_path):
    kid, secret = credentials
    call_command("proof", url=live_server.url, kid=kid, secret=secret, out=str(tmp_path),
                 timeout=60)
    report = json.loads((tmp_path / "proof-report.json").read_text())
    assert [t["passed"] for t in report["tests"]] == [True, True, True]
    markdown = (tmp_path / "proof-report.md").read_text()
    assert "FC-RUN-002: Run status changed from pending to running" in markdown
    statuses = sorted(Run.objects.values_list("status", flat=True))
    assert statuses == ["completed", "completed", "failed"]
    call_command("audit_verify")


def test_internal_steps_run_on_the_worker(worker, credentials):
    from fcore.models import Tenant
    from runs.services import run_create

    tenant = Tenant.objects.get(slug="tenant_omega")
    runs = [run_create(tenant=tenant, workflow="nightly_report", input={"n": i},
                       actor="user:olivia")[0] for i in range(10)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(r.status == "completed" for r in Run.objects.filter(pk__in=[r.pk for r in runs])):
            break
        time.sleep(0.2)
    finished = Run.objects.filter(pk__in=[r.pk for r in runs])
    assert {r.status for r in finished} == {"completed"}, Path(worker.log_path).read_text()[-3000:]
    for run in finished:
        assert run.steps.filter(status="succeeded").count() == 3
        assert run.workflow_hash
    call_command("audit_verify")


def test_a_background_verification_runs_on_the_worker(live_server, worker, credentials):
    from fcore.interfaces.client import FCClient

    kid, secret = credentials
    with FCClient(live_server.url, kid, secret, "tenant_omega", "auditor") as fc:
        fc.create_run("pt004_execution_spine", {"amount": 5})
        started = fc.audit_verify_start()
        assert started["status"] in ("pending", "running", "done")
        deadline = time.monotonic() + 60
        latest = started
        while latest["status"] in ("pending", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
            latest = fc.audit_verification()
        assert latest["status"] == "done", Path(worker.log_path).read_text()[-3000:]
        assert latest["verification_id"] == started["verification_id"]
        report = latest["report"]
        assert report["ok"] is True and report["events"] > 0 and report["failures"] == []
