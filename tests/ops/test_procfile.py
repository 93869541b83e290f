"""The Procfile's process model, under honcho as a process manager runs it: `honcho start
release` migrates a new PostgreSQL database, then `honcho start web worker beat` serves
(gunicorn, a Celery worker over the run's Redis, beat); a run created meanwhile is carried
to its end by the worker; SIGTERM stops every process cleanly (the worker's warm
shutdown, nothing killed) and leaves none behind. The Dockerfile and compose.yaml run the
same commands (docs/operations.md, "Processes")."""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from django.conf import settings
from django.db import connection
from honcho.environ import parse_procfile

from fcore import celery_app
from tests.install import ROOT, Tree, child_env, free_port, postgres_dsn, scratch_database
from tests.worker import require_broker

pytestmark = pytest.mark.postgres
BIN = Path(sys.executable).parent
# a tenant with a workflow of two steps the worker executes, and a run of it
SETUP = """
from runs.bundles import bundle_load
from runs.services import run_create
from fcore.models import Tenant
bundle_load({"tenant": "tenant_procfile", "workflows": [{"name": "naps", "steps": [
    {"id": "one", "type": "sleep", "seconds": 0.5},
    {"id": "two", "type": "sleep", "seconds": 0.5, "after": ["one"]}]}]},
    actor="system:test", source="test")
run, _ = run_create(tenant=Tenant.objects.get(slug="tenant_procfile"), workflow="naps",
                    input={}, actor="user:test")
print(run.run_id)
"""


def _honcho(*processes, port=None) -> list:
    return [BIN / "honcho", "--no-colour", "start", *(["-p", str(port)] if port else []),
            *processes]


def test_honcho_runs_the_procfile(tmp_path):
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith(
            "redis://"):
        pytest.skip("the Procfile is run on PostgreSQL + Redis (make test-postgres)")
    require_broker()
    celery_app.control.purge()  # nothing of earlier tests for this worker
    with scratch_database("procfile") as database_url:
        env = child_env(FCORE_VAR_DIR=str(tmp_path / "var"), DATABASE_URL=database_url,
                        CELERY_BROKER_URL=settings.CELERY_BROKER_URL, FCORE_LOG_LEVEL="INFO",
                        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        release = subprocess.run(_honcho("release"), cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=180)
        assert release.returncode == 0, release.stdout + release.stderr
        assert "Applying runs.0001_initial... OK" in release.stdout

        port = free_port()
        honcho = Tree(_honcho("web", "worker", "beat", port=port), cwd=ROOT,
                      env=env, log_path=tmp_path / "honcho.log")
        try:
            honcho.wait_healthy(port, "ready.", "beat: Starting")
            created = subprocess.run([BIN / "fc", "shell", "-c", SETUP], cwd=tmp_path,
                                     env=env, capture_output=True, text=True, timeout=120)
            assert created.returncode == 0, created.stderr
            run_id = created.stdout.strip().splitlines()[-1]
            dsn = postgres_dsn(database_url.rsplit("/", 1)[1])
            deadline = time.monotonic() + 60
            with psycopg.connect(dsn, autocommit=True) as db:
                while (status := db.execute("SELECT status FROM runs_run WHERE run_id = %s",
                                            [run_id]).fetchone()[0]) != "completed":
                    assert time.monotonic() < deadline, f"run {status}:\n{honcho.output()}"
                    time.sleep(0.2)
                steps = db.execute("SELECT step_id, status FROM runs_steprun WHERE run_id = "
                                   "%s ORDER BY step_id", [run_id]).fetchall()
            assert steps == [("one", "succeeded"), ("two", "succeeded")]

            assert honcho.stop(bound=20) == 143  # honcho's status after a SIGTERM
            output = honcho.output()
            assert "Warm shutdown" in output
            assert "SIGKILL" not in output  # every process stopped within honcho's 5 s
            for name in ("web", "worker", "beat"):
                assert f"{name}.1 stopped" in output, output[-3000:]
        finally:
            honcho.close()


def test_the_container_files_run_the_procfile_s_processes():
    """compose.yaml and the Dockerfile are not run here (no container engine): they must
    at least run exactly what the Procfile, which the test above runs, does."""
    procfile = {name: shlex.split(cmd.replace("${PORT:-8000}", "8000")) for name, cmd in
                parse_procfile((ROOT / "Procfile").read_text()).processes.items()}
    assert set(procfile) == {"release", "web", "worker", "beat"}
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {name: services[name]["command"] for name in procfile} == procfile
    assert set(services) == {*procfile, "postgres", "redis"}
    cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines()
               if line.startswith("CMD "))
    assert json.loads(cmd[4:]) + ["--port", "8000"] == procfile["web"]
