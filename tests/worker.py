"""A real Celery worker in a subprocess, connected to the test database and broker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dj_database_url
from django.conf import settings
from django.db import connection


def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    url = dj_database_url.parse(settings.DATABASE_URL)
    user = url.get("USER") or ""
    host = url.get("HOST") or "127.0.0.1"
    port = url.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


class Worker:
    """`celery -A fcore worker` as a child process; `stop()` ends it."""

    def __init__(self, *, concurrency: int = 2, log_path: Path):
        self.log_path = log_path
        env = {**os.environ, "DATABASE_URL": test_database_url(), "FCORE_CELERY_EAGER": "0"}
        cmd = [os.path.join(os.path.dirname(sys.executable), "celery"), "-A", "fcore",
               "worker", "-l", "info", "-c", str(concurrency), "--without-gossip",
               "--without-mingle", "--without-heartbeat", "-n", f"test{os.getpid()}@%h"]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            if "ready." in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
