"""The wheel works without the checkout: built from this checkout, installed (not editable)
into a scratch virtual environment, and driven only through its `fc` console script from
a directory outside the checkout. On a new PostgreSQL database and the run's Redis: `fc
migrate`, `fc demo-seed` (the example bundles come from inside the package), `fc serve`
(gunicorn, a Celery worker, beat), the console's templates and static files, the PT-004
proof as an outside client, `fc verify-pack` of a run's evidence pack, `fc audit-verify`;
everything written lands in FCORE_VAR_DIR and nothing in site-packages."""

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from fcore import celery_app
from fcore.interfaces.client import FCClient
from tests.conftest import ALL_SCOPES
from tests.install import (
    ROOT,
    Tree,
    child_env,
    free_port,
    scratch_database,
    venv_create,
    wheel_build,
)
from tests.worker import require_broker

pytestmark = pytest.mark.postgres


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a scratch environment with the wheel and its dependencies."""
    if connection.vendor != "postgresql":
        pytest.skip("the installed wheel is served on PostgreSQL + Redis (make test-postgres)")
    base = tmp_path_factory.mktemp("wheel")
    return venv_create(base / "venv", wheel_build(ROOT, base / "dist"))


def test_the_installed_wheel_serves_and_passes_the_proof(installed, tmp_path):
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("the installed wheel is served over Redis (make test-postgres)")
    require_broker()
    celery_app.control.purge()  # nothing of earlier tests for this worker
    site = next((installed.parent / "lib").glob("python*/site-packages"))
    before = _tree(site)
    work = tmp_path / "elsewhere"  # the current directory: not the checkout
    work.mkdir()
    var_dir = tmp_path / "var"

    def fc(*args, env, timeout=180):
        result = subprocess.run([installed / "fc", *map(str, args)], cwd=work, env=env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"fc {args[0]}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    # an installed copy refuses to guess where to write
    refused = subprocess.run([installed / "fc", "migrate"], cwd=work, env=child_env(),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "FCORE_VAR_DIR is not set" in refused.stderr
    assert not (work / "var").exists()

    with scratch_database("installed") as database_url:
        env = child_env(FCORE_VAR_DIR=str(var_dir), DATABASE_URL=database_url,
                        CELERY_BROKER_URL=settings.CELERY_BROKER_URL)
        where = fc("shell", "-c", "import fcore, runs.engine; from django.conf import settings;"
                   " print(fcore.__file__, runs.engine.__file__, settings.VAR_DIR)", env=env)
        fcore_file, engine_file, var = where.strip().splitlines()[-1].split()
        assert Path(fcore_file).is_relative_to(site) and Path(engine_file).is_relative_to(site)
        assert Path(var) == var_dir
        fc("migrate", "--noinput", "-v", "0", env=env)
        assert "demo tenant tenant_omega ready" in fc("demo-seed", env=env)
        credentials = json.loads(fc("create-api-client", "--tenant", "tenant_omega",
                                    "--name", "proof", "--scopes", ALL_SCOPES, env=env))

        port = free_port()
        served = Tree([installed / "fc", "serve", "--port", str(port)], cwd=work,
                      env={**env, "FCORE_LOG_LEVEL": "INFO"}, log_path=tmp_path / "serve.log")
        try:
            served.wait_healthy(port, "ready.", "beat: Starting")
            for path, expected in (("/console/login/", b'name="password"'),
                                   ("/static/fcore/console.css", b"{"),
                                   ("/static/htmx.min.js", b"htmx")):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                            timeout=10) as answer:
                    assert expected in answer.read(), path
            out = tmp_path / "proof"
            fc("proof", "--url", f"http://127.0.0.1:{port}", "--kid", credentials["kid"],
               "--secret", credentials["secret"], "--out", str(out), env=env)
            report = json.loads((out / "proof-report.json").read_text())
            assert [t["passed"] for t in report["tests"]] == [True, True, True]
            # the happy path's evidence pack, sealed now, checked by `fc verify-pack`: no
            # settings, so no FCORE_VAR_DIR
            fc("audit-checkpoint", env=env)
            with FCClient(f"http://127.0.0.1:{port}", kid=credentials["kid"],
                          secret=credentials["secret"], tenant="tenant_omega",
                          sub="auditor", scope="audit:read runs:read") as client:
                pack = client.evidence(report["tests"][0]["run_id"])
            (tmp_path / "pack.json").write_text(json.dumps(pack), encoding="utf-8")
            assert fc("verify-pack", tmp_path / "pack.json", env=child_env()).startswith("OK ")
            assert served.stop(bound=30) == 0
            assert "Warm shutdown" in served.output()
        finally:
            served.close()
        fc("audit-verify", env=env)  # exits non-zero on any failure

    written = {p.name for p in var_dir.iterdir()}
    assert {"secret_key", "client_key", "signing_key"} <= written, written
    assert any(name.startswith("celerybeat-schedule") for name in written), written
    assert not (work / "var").exists()
    assert _tree(site) == before, sorted(_tree(site) ^ before)
