"""`manage.py serve` stops promptly and warmly: on SIGTERM (or Ctrl-C, SIGINT to the whole
process group) every process it started — gunicorn and its workers, the Celery worker and
its pool, beat — is gone within a bound, and a step that is running when the signal comes
finishes first (warm shutdown). Each test serves the embedded default (SQLite, file-system
broker) from its own FCORE_VAR_DIR on a free port, whatever this test run is configured
with."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from fcore.management.commands.serve import (
    QUICK_STOP_TRANSPORT,
    QuickStopFilesystemTransport,
    _descendants,
)
from tests.install import Tree, alive, free_port, healthy

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 15
# a tenant with a one-step workflow whose step sleeps 4 s in the worker, and a run of it
SETUP = """
from runs.bundles import bundle_load
from runs.services import run_create
from fcore.models import Tenant
bundle_load({"tenant": "tenant_serve", "workflows": [{"name": "nap", "steps": [
    {"id": "nap", "type": "sleep", "seconds": 4}]}]}, actor="system:test", source="test")
run, _ = run_create(tenant=Tenant.objects.get(slug="tenant_serve"), workflow="nap",
                    input={}, actor="user:test")
print(run.run_id)
"""


def _env(var_dir: Path, **extra) -> dict:
    """The embedded default in `var_dir`: none of this run's database, broker or test
    switches."""
    drop = ("DATABASE_URL", "CELERY_BROKER_URL", "FCORE_CELERY_EAGER", "FCORE_CACHE_URL",
            "FCORE_TEST_WORKER", "FCORE_TEST_DB_NAME", "FCORE_TEST_SQLITE_NAME", "PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "FCORE_VAR_DIR": str(var_dir), **extra}


def _manage(var_dir: Path, *args) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_env(var_dir),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated embedded database, shared by this module's tests (each test serves from
    its own copy of the directory)."""
    var_dir = tmp_path_factory.mktemp("serve-template")
    _manage(var_dir, "migrate", "--noinput")
    return var_dir


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


class Served(Tree):
    """`manage.py serve` in its own process group, with its output in a file."""

    def __init__(self, var_dir: Path):
        self.var_dir, self.port = var_dir, free_port()
        # info level: the worker says "ready." and beat "Starting" once they are up
        super().__init__([sys.executable, "manage.py", "serve", "--port", str(self.port)],
                         cwd=ROOT, env=_env(var_dir, FCORE_LOG_LEVEL="INFO"),
                         log_path=var_dir / "serve.log")

    def wait_ready(self, timeout: float = 90) -> None:
        """/healthz answers, the worker consumes, beat runs, and the pools have forked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited:\n{self.output()[-3000:]}"
            text = self.output()
            if "ready." in text and "beat: Starting" in text and healthy(self.port):
                # gunicorn with its 2 workers, the Celery worker with its 2 pool processes, beat
                if len(_descendants(self.proc.pid)) >= 7:
                    return
            time.sleep(0.2)
        raise AssertionError(f"serve not ready:\n{self.output()[-3000:]}")

    def stop(self, sig: int, *, group: bool = False) -> float:
        """Send `sig` (to the whole group, as a terminal's Ctrl-C does, when `group`) and
        return the seconds until serve and every process under it are gone."""
        pids = [self.proc.pid, *_descendants(self.proc.pid)]
        names = {pid: _cmdline(pid) for pid in pids}
        started = time.monotonic()
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        while time.monotonic() - started < STOP_BOUND_S:
            self.proc.poll()  # reap serve itself
            if not any(alive(pid) for pid in pids):
                return time.monotonic() - started
            time.sleep(0.05)
        left = "\n".join(f"{pid} {names[pid]}" for pid in pids if alive(pid))
        raise AssertionError(f"still running {STOP_BOUND_S} s after the signal:\n{left}\n"
                             f"{self.output()[-3000:]}")


@pytest.fixture
def serve(migrated, tmp_path):
    var_dir = tmp_path / "var"
    shutil.copytree(migrated, var_dir)
    served = Served(var_dir)
    yield served
    served.close()


def _step(var_dir: Path, run_id: str) -> tuple[str, str]:
    """(run status, its step's status), read from the embedded database."""
    with sqlite3.connect(f"file:{var_dir / 'fcore.sqlite3'}?mode=ro", uri=True,
                         timeout=10) as db:
        return db.execute(
            "SELECT r.status, s.status FROM runs_run r JOIN runs_steprun s "
            "ON s.run_id = r.run_id WHERE r.run_id = ?",
            [run_id.replace("-", "")]).fetchone() or ("", "")


def test_sigterm_lets_the_running_step_finish_then_everything_exits(serve):
    serve.wait_ready()
    run_id = _manage(serve.var_dir, "shell", "-c", SETUP).strip().splitlines()[-1]
    deadline = time.monotonic() + 30
    while _step(serve.var_dir, run_id)[1] != "running":
        assert time.monotonic() < deadline, f"step never ran: {_step(serve.var_dir, run_id)}"
        time.sleep(0.1)

    serve.stop(signal.SIGTERM)  # fails past STOP_BOUND_S

    # the worker finished the step it was running before it exited: nothing was killed
    assert "Warm shutdown" in serve.output()
    assert _step(serve.var_dir, run_id) == ("completed", "succeeded"), serve.output()[-3000:]


def test_ctrl_c_stops_an_idle_machine(serve):
    serve.wait_ready()
    serve.stop(signal.SIGINT, group=True)  # fails past STOP_BOUND_S
    assert "Warm shutdown" in serve.output()


@pytest.fixture
def stopping(monkeypatch):
    """This process looks like a Celery worker that was told to stop (warm)."""
    from celery.worker import state

    monkeypatch.setattr(state, "should_stop", 0)  # EX_OK: falsy, but set


def _channel(tmp_path):
    folder = str(tmp_path / "broker")
    os.makedirs(folder, exist_ok=True)
    conn = Connection("filesystem://", transport=QUICK_STOP_TRANSPORT, transport_options={
        "data_folder_in": folder, "data_folder_out": folder, "control_folder": folder,
        "polling_interval": 0.05})
    queue = Queue("q", Exchange("q", type="direct"), routing_key="q")
    return conn, queue


def test_the_worker_transport_still_delivers(tmp_path):
    conn, queue = _channel(tmp_path)
    with conn:
        assert isinstance(conn.transport, QuickStopFilesystemTransport)
        got = []
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append(body)],
                           accept=["json"]):
            conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="q",
                                    declare=[queue], serializer="json")
            conn.drain_events(timeout=2)
        assert got == [{"n": 1}]
        with conn.Consumer(queue, accept=["json"]):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.5)  # nothing there: the full timeout, as before
            assert time.monotonic() - started >= 0.45


def test_the_worker_transport_stops_polling_once_the_worker_stops(tmp_path, stopping):
    """Celery's blocking loop calls drain_events(timeout=2.0) and looks at its shutdown
    flag only in between: the stopping worker must not sit out the 2 s."""
    conn, queue = _channel(tmp_path)
    with conn, conn.Consumer(queue, accept=["json"]):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=2.0)
        assert time.monotonic() - started < 0.5
