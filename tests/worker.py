"""A real Celery worker (and beat) in a subprocess, connected to the test database and
broker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dj_database_url
import pytest
from django.conf import settings
from django.db import connection

from fcore import celery_app
from tests.conftest import service_missing

CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


def require_worker_mode() -> None:
    """Worker tests need this process's Celery settings for real workers, not eager."""
    if celery_app.conf.task_always_eager:
        pytest.fail("worker tests run with FCORE_TEST_WORKER=1 (make test does)")


def require_broker() -> None:
    """The configured broker answers; else a missing service (a failure under
    FCORE_REQUIRE_SERVICES=1)."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any broker failure means "not available"
        service_missing(f"the Celery broker {settings.CELERY_BROKER_URL} ({exc})")


def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    url = dj_database_url.parse(settings.DATABASE_URL)
    user = url.get("USER") or ""
    host = url.get("HOST") or "127.0.0.1"
    port = url.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def _child_env(env: dict | None) -> dict:
    return {**os.environ, "DATABASE_URL": test_database_url(), "FCORE_CELERY_EAGER": "0",
            **(env or {})}


def _wait_for_line(proc, log_path: Path, marker: str, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log_path.read_text()[-2000:]}")
        if marker in log_path.read_text():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready: {log_path.read_text()[-2000:]}")


class Worker:
    """`celery -A fcore worker` as a child process; `stop()` ends it.

    `env` overrides the environment, `pool` picks the pool (prefork by default), `name`
    the node name. `own_group=True` starts it in its own process group, so that `kill9()`
    takes the main process and its pool children at once, as when a machine dies."""

    def __init__(self, *, concurrency: int = 2, log_path: Path, env: dict | None = None,
                 pool: str | None = None, name: str | None = None, own_group: bool = False):
        self.log_path = log_path
        self.own_group = own_group
        cmd = [CELERY, "-A", "fcore", "worker", "-l", "info", "-c", str(concurrency),
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", name or f"test{os.getpid()}@%h"]
        if pool:
            cmd += ["-P", pool]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=_child_env(env), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=own_group)

    def wait_ready(self, timeout: float = 30) -> None:
        _wait_for_line(self.proc, self.log_path, "ready.", "worker", timeout)

    def is_ready(self) -> bool:
        return self.proc.poll() is None and "ready." in self.log_path.read_text()

    def pool_children(self) -> list[int]:
        """Pids of the worker's pool processes (prefork), from /proc."""
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):  # any thread may fork
            try:
                pids += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:
                continue
        return sorted(set(pids))

    def kill9(self) -> None:
        """SIGKILL: the whole process group when it has its own, else the main process."""
        try:
            if self.own_group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
        elif self.own_group:  # the main process is gone: make sure no child outlives it
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


class Beat:
    """`celery -A fcore beat` as a child process, with its schedule file in `schedule`."""

    def __init__(self, *, log_path: Path, schedule: Path, env: dict | None = None):
        self.log_path = log_path
        cmd = [CELERY, "-A", "fcore", "beat", "-l", "info", "-s", str(schedule),
               "--max-interval", "1"]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=_child_env(env), stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        _wait_for_line(self.proc, self.log_path, "beat: Starting", "beat", timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
