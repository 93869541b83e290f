"""Waiting reads against a real web server (`manage.py web`: gunicorn, the worker model
of docs/operations.md) in its own process, woken by another process's commits: on the
SQLite run the embedded default (stamp files), on the PostgreSQL run PostgreSQL with
Redis pub/sub wake-ups and the web process's connection pool.

- a waiting read answers as soon as the run moves, with the change in it;
- a hundred clients waiting at once leave the server serving everyone else: ordinary
  requests are answered while every waiter is still waiting, and a change then wakes all
  hundred (on PostgreSQL, without a hundred database connections);
- the SDK's `wait_for` (sync and async) waits with waiting reads: a handful of requests,
  not a poll every 0.2 s.
"""

import asyncio
import json
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from fcore.interfaces.client import AsyncFCClient, FCClient
from tests.install import ROOT, Tree, child_env, free_port, postgres_dsn, scratch_database

WAITERS = 100
SCOPES = "runs:read runs:write gates:request gates:resolve audit:read"


def _manage(env, *args) -> str:
    import subprocess

    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class Server:
    def __init__(self, port, creds, dsn):
        self.base, self.creds, self.dsn = f"http://127.0.0.1:{port}", creds, dsn

    def client(self, sub="waiter", **kwargs) -> FCClient:
        return FCClient(self.base, kid=self.creds["kid"], secret=self.creds["secret"],
                        tenant="tenant_omega", sub=sub, **kwargs)

    def async_client(self, sub="waiter", **kwargs) -> AsyncFCClient:
        return AsyncFCClient(self.base, kid=self.creds["kid"], secret=self.creds["secret"],
                             tenant="tenant_omega", sub=sub, **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`manage.py web` on a migrated database with the PT-004 workflow and an API key."""
    var = tmp_path_factory.mktemp("waiting")
    with ExitStack() as stack:
        extra = {"FCORE_VAR_DIR": str(var / "var"), "FCORE_API_RATE": "1000000/min",
                 "FCORE_LOG_LEVEL": "WARNING"}
        dsn = None
        if connection.vendor == "postgresql":
            from tests.worker import require_broker

            require_broker()
            database_url = stack.enter_context(scratch_database("waiting"))
            dsn = postgres_dsn(database_url.rsplit("/", 1)[1])
            # the broker stays the embedded one (nothing here needs a worker); the
            # wake-ups go through this run's Redis
            extra |= {"DATABASE_URL": database_url,
                      "FCORE_WAKEUP_URL": settings.FCORE_WAKEUP_URL}
        env = child_env(**extra)
        _manage(env, "migrate", "--noinput")
        _manage(env, "load_workflows", "docs/examples/pt004.yaml")
        creds = json.loads(_manage(env, "create_api_client", "--tenant", "tenant_omega",
                                   "--name", "waiting", "--scopes", SCOPES))
        port = free_port()
        web = Tree([sys.executable, "manage.py", "web", "--port", str(port)], cwd=ROOT,
                   env=env, log_path=Path(var) / "web.log")
        stack.callback(web.close)
        web.wait_healthy(port)
        yield Server(port, creds, dsn)


def _run(fc) -> dict:
    run = fc.create_run("pt004_execution_spine", {"amount": 5})
    return fc.get_run(run["run_id"])


def test_a_waiting_read_answers_when_the_run_moves(server):
    with server.client() as fc, server.client(sub="executor") as executor:
        run = _run(fc)
        seq = run["audit_seq"]
        got = {}

        def wait():
            got["run"] = fc.get_run(run["run_id"], wait_s=25, after_seq=seq)
            got["at"] = time.monotonic()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        assert "run" not in got  # it waits: nothing has changed
        executor.report_step(run["run_id"], "step_1", "succeeded", output={"n": 1})
        reported = time.monotonic()
        waiter.join(30)
        assert got["run"]["audit_seq"] > seq
        steps = {s["step_id"]: s["status"] for s in got["run"]["steps"]}
        assert steps["step_1"] == "succeeded" and steps["step_2"] == "running"
        assert got["at"] - reported < 20  # woken by the change, not by its 25 s running out

        # unchanged: answers after wait_s with the same seq
        started = time.monotonic()
        same = fc.get_run(run["run_id"], wait_s=1, after_seq=got["run"]["audit_seq"])
        assert time.monotonic() - started >= 1
        assert same["audit_seq"] == got["run"]["audit_seq"]


def _server_connections(dsn) -> int:
    with psycopg.connect(dsn, autocommit=True) as db:
        return db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND pid <> pg_backend_pid()").fetchone()[0]


def test_a_hundred_waiting_clients_leave_the_server_to_the_others(server):
    with server.client(sub="operator") as fc:
        run = _run(fc)
    seq = run["audit_seq"]
    answers, errors = [], []
    lock = threading.Lock()

    def wait(n):
        try:
            with server.client(sub=f"waiter_{n}", timeout=60) as client:
                answer = client.get_run(run["run_id"], wait_s=30, after_seq=seq)
            with lock:
                answers.append(answer["audit_seq"])
        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
            with lock:
                errors.append(repr(exc))

    waiters = [threading.Thread(target=wait, args=(n,)) for n in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    time.sleep(3)  # every waiter has sent its request
    # everyone else is served meanwhile: new runs, reads, reports, /healthz
    with server.client(sub="busy") as busy, httpx.Client(base_url=server.base) as plain:
        for i in range(10):
            other = busy.create_run("pt004_execution_spine", {"amount": i},
                                    idempotency_key=f"busy-{i}")
            assert busy.get_run(other["run_id"])["status"] == "running"
            busy.report_step(other["run_id"], "step_1", "succeeded")
            assert plain.get("/healthz").json() == {"ok": True}
        held = _server_connections(server.dsn) if server.dsn else None
    with lock:
        assert answers == [] and errors == []  # … while all hundred still wait
    if held is not None:  # waiting holds no database connection
        assert held < WAITERS // 2, held
    with server.client(sub="executor") as executor:
        executor.report_step(run["run_id"], "step_1", "succeeded")
    for waiter in waiters:
        waiter.join(40)
    assert errors == []
    assert len(answers) == WAITERS and all(a > seq for a in answers)


class Counting(httpx.HTTPTransport):
    """A transport that counts the requests a client sends."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def handle_request(self, request):
        self.sent.append(request.url.path)
        return super().handle_request(request)


class AsyncCounting(httpx.AsyncHTTPTransport):
    def __init__(self):
        super().__init__()
        self.sent = []

    async def handle_async_request(self, request):
        self.sent.append(request.url.path)
        return await super().handle_async_request(request)


def test_wait_for_waits_with_waiting_reads(server):
    counting = Counting()
    with server.client(sub="executor") as executor, \
            server.client(transport=counting) as fc:
        run = _run(fc)
        counting.sent.clear()

        def later():
            time.sleep(1.5)
            executor.report_step(run["run_id"], "step_1", "succeeded")
            time.sleep(1.5)
            executor.report_step(run["run_id"], "step_2", "succeeded")

        reporter = threading.Thread(target=later)
        reporter.start()
        done = fc.wait_for(run["run_id"], lambda r: r["steps"][1]["status"] == "succeeded",
                           timeout=25)
        reporter.join()
    assert done["steps"][1]["status"] == "succeeded"
    # polling every 0.2 s would have sent 15 or more; a waiting read answers each move
    assert 2 <= len(counting.sent) <= 6, counting.sent


def test_async_wait_for_waits_with_waiting_reads(server):
    counting = AsyncCounting()
    with server.client(sub="executor") as executor:
        run = _run(executor)

        async def scenario():
            async with server.async_client(transport=counting) as afc:
                async def later():
                    await asyncio.sleep(1.5)
                    await asyncio.to_thread(executor.report_step, run["run_id"], "step_1",
                                            "succeeded")

                task = asyncio.create_task(later())
                done = await afc.wait_for(
                    run["run_id"], lambda r: r["steps"][0]["status"] == "succeeded",
                    timeout=25)
                await task
            return done

        done = asyncio.run(scenario())
    assert done["steps"][0]["status"] == "succeeded"
    assert 2 <= len(counting.sent) <= 4, counting.sent
