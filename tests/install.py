"""Installs and process trees for the deployment tests (tests/ops/test_wheel.py,
tests/ops/test_procfile.py, tests/audit/test_verifier_dist.py).

A wheel is built from this checkout (`pip wheel --no-deps --no-build-isolation`: hatchling
comes with the `dev` extra) and installed, with its dependencies from the package index,
into a scratch virtual environment made from the base interpreter: nothing of this
environment nor of the checkout is on its path. The dependencies are constrained to the
versions installed here, so pip resolves at once and takes them from its cache.
"""

import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import dj_database_url
import psycopg
from django.conf import settings
from psycopg import sql

from fcore.management.commands.serve import _descendants

ROOT = Path(__file__).resolve().parents[1]
OWN = {"federation-core", "fc-verify"}
# the variables of this test run a child must not inherit (it gets its own)
RUN_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "FCORE_CELERY_EAGER", "FCORE_CACHE_URL",
                 "FCORE_TEST_WORKER", "FCORE_TEST_DB_NAME", "FCORE_TEST_SQLITE_NAME",
                 "FCORE_VAR_DIR", "DJANGO_SETTINGS_MODULE", "PORT", "PYTHONPATH",
                 "VIRTUAL_ENV")


def wheel_build(source: Path, out: Path) -> Path:
    """The wheel of the project at `source` (this checkout or its verifier/), in `out`."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)],
                   check=True, capture_output=True, text=True, timeout=120)
    [wheel] = out.glob("*.whl")
    return wheel


def venv_create(path: Path, *wheels: Path) -> Path:
    """A virtual environment at `path` of the base interpreter with `wheels` and their
    dependencies installed; returns its bin/ directory."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=60)
    python = path / "bin" / "python"
    constraints = path / "constraints.txt"
    pinned = {re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower(): dist.version
              for dist in importlib.metadata.distributions()}
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in
                                   sorted(pinned.items()) if name and name not in OWN))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--no-compile", "-c", str(constraints), *map(str, wheels)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return path / "bin"


def child_env(**extra) -> dict:
    """This environment less this test run's database, broker and switches."""
    env = {k: v for k, v in os.environ.items() if k not in RUN_VARIABLES}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def postgres_dsn(dbname: str) -> str:
    """The configured PostgreSQL server, as the configured user, database `dbname`."""
    url = dj_database_url.parse(settings.DATABASE_URL)
    return psycopg.conninfo.make_conninfo(
        host=url.get("HOST") or "127.0.0.1", port=url.get("PORT") or 5432,
        user=url.get("USER") or "postgres", password=url.get("PASSWORD") or None,
        dbname=dbname, connect_timeout=5)


@contextmanager
def scratch_database(suffix: str):
    """A new, empty PostgreSQL database named after this run's test database; yields its
    URL and drops it afterwards."""
    name = f"{settings.DATABASES['default']['TEST']['NAME']}_{suffix}"
    admin = postgres_dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = dj_database_url.parse(settings.DATABASE_URL)
    password = f":{url['PASSWORD']}" if url.get("PASSWORD") else ""
    try:
        yield (f"postgres://{url.get('USER') or 'postgres'}{password}@"
               f"{url.get('HOST') or '127.0.0.1'}:{url.get('PORT') or 5432}/{name}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Tree:
    """A command in its own process group with its output in a file: `wait_healthy()` for
    the web process, `stop()` with SIGTERM, and `close()` that leaves nothing running."""

    def __init__(self, argv: list, *, env: dict, cwd: Path, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, port: int, *markers: str, timeout: float = 90) -> None:
        """/healthz answers on `port` and every marker is in the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited:\n{self.output()[-4000:]}"
            if all(marker in self.output() for marker in markers) and healthy(port):
                return
            time.sleep(0.2)
        raise AssertionError(f"not ready after {timeout} s:\n{self.output()[-4000:]}")

    def stop(self, bound: float) -> int:
        """SIGTERM to the command; its exit status once it and every process under it are
        gone, which must be within `bound` seconds."""
        pids = [self.proc.pid, *_descendants(self.proc.pid)]
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            self.proc.poll()
            if not any(alive(pid) for pid in pids):
                return self.proc.wait()
            time.sleep(0.05)
        left = [pid for pid in pids if alive(pid)]
        raise AssertionError(f"{left} still running {bound} s after SIGTERM:\n"
                             f"{self.output()[-4000:]}")

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.log.close()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return json.load(answer) == {"ok": True}
    except OSError:
        return False
