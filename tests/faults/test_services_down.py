"""The services going away under running workflows, on PostgreSQL + Redis (issue 6 #7).

- Redis is killed (SIGKILL) while steps run and started again 3 s later: everything
  queued or unacknowledged is lost (it keeps nothing on disk), and a run is created while
  it is down. The test runs its own redis-server on a free port, so the restart cannot
  disturb anything else on the machine's shared Redis; the workers, the beat and this
  process use that one.
- PostgreSQL refuses connections for 3 s, twice: while steps run, then while the workers
  sit idle holding open connections. The test database stops accepting connections
  (`ALLOW_CONNECTIONS false`) and every backend on it but this process's own is
  terminated, then it accepts them again; the shared server itself stays up. Each worker
  process must then connect anew.

Either way every run must still reach its correct terminal state with each step result
recorded once, and every receipt chain and audit stream must verify.
"""

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest
import redis
from django.db import connection

from fcore import celery_app
from runs.models import Run, StepRun
from tests.conftest import service_missing

from .helpers import (
    FANOUT,
    MIX,
    Cluster,
    check_runs,
    create_runs,
    free_port,
    live_runs,
    steps_running,
    superuser_dsn,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 3
OUTAGE_S = 3
RECOVERY_LIMIT_S = 60


def _report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n[faults] {text}")


class RedisServer:
    """A private redis-server that keeps nothing on disk, started and restarted alike."""

    def __init__(self, tmp_path):
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server (to restart a Redis of its own)")
        self.port = free_port()
        self.cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(tmp_path), "--daemonize", "no"]
        self.log_path = tmp_path / "redis.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: self._ping(client), timeout=10,
                       what=lambda: f"redis-server to start: {self.log_path.read_text()}")
        finally:
            client.close()

    def _ping(self, client) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log_path.read_text()}")
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, and every queued and unacknowledged
        message with it (it keeps nothing on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def publishing_to(url: str):
    """This process sends its tasks (run_create's first steps) to `url` inside the block:
    Celery reads CELERY_BROKER_URL from the environment before its configuration."""
    names = ("CELERY_BROKER_URL", "CELERY_BROKER_WRITE_URL")
    saved_env = {name: os.environ.get(name) for name in names}
    saved_pools = celery_app._pool, celery_app.amqp._producer_pool
    os.environ.update(dict.fromkeys(names, url))
    celery_app._pool = celery_app.amqp._producer_pool = None
    try:
        yield
    finally:
        ours = celery_app._pool
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        celery_app._pool, celery_app.amqp._producer_pool = saved_pools
        if ours is not None:
            ours.force_close_all()


def test_redis_restarts_while_steps_run(tenant, tmp_path, capsys):
    server = RedisServer(tmp_path)
    server.start()
    cluster = Cluster(tmp_path, env={"CELERY_BROKER_URL": server.url,
                                     "CELERY_BROKER_WRITE_URL": server.url})
    try:
        with publishing_to(server.url):
            cluster.start(WORKERS)
            run_ids = create_runs(tenant, MIX)
            wait_until(lambda: steps_running(run_ids, 2), timeout=30,
                       what=lambda: f"steps to run\n{cluster.logs()}")
            in_step = StepRun.objects.filter(run__in=run_ids, status="running").count()
            server.kill()
            down_at = time.monotonic()
            late = create_runs(tenant, [FANOUT])  # its first step cannot be enqueued
            run_ids += late
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            server.start()
            up_at = time.monotonic()
            recovery_s = wait_until(lambda: live_runs(run_ids) == 0,
                                    timeout=RECOVERY_LIMIT_S, interval=0.2,
                                    what=lambda: f"runs to end\n{cluster.logs()}")
    finally:
        cluster.stop()
        server.kill()
    stats = check_runs(run_ids)
    late_run = Run.objects.get(pk=late[0])
    prep = late_run.steps.get(step_id="prep")
    assert prep.redeliveries >= 1, "the lost first step was not delivered again"
    logs = cluster.logs(tail=10**7)
    assert "Connection to broker lost" in logs or "Cannot connect to redis" in logs, logs
    _report(capsys, f"redis killed with {in_step} steps running, restarted after "
                    f"{up_at - down_at:.1f} s: all {len(run_ids)} runs ended {recovery_s:.1f} s "
                    f"after the restart (the run created while it was down in "
                    f"{(late_run.ended_at - late_run.created_at).total_seconds():.1f} s); "
                    f"{stats}")


def _terminate(admin, name: str, own_pid: int) -> int:
    return admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> %s", [name, own_pid]).fetchone()[0]


def _backends(admin, name: str, own_pid: int) -> int:
    return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                         [name, own_pid]).fetchone()[0]


def _refuse_for_a_moment(admin, name: str, own_pid: int, counts: Counter) -> None:
    """The test database refuses new connections and loses every one it had (but this
    process's) for OUTAGE_S seconds."""
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        down_at = time.monotonic()
        counts["terminated"] += _terminate(admin, name, own_pid)
        while time.monotonic() - down_at < OUTAGE_S:  # and whoever got in just before
            time.sleep(0.2)
            counts["terminated"] += _terminate(admin, name, own_pid)
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


_DEAD = re.compile(r"raised unexpected: OperationalError\('the connection is (closed|lost)")


def _dead_connection_failures(cluster) -> list[str]:
    """Tasks that failed on a connection psycopg already knew to be dead."""
    return [line[:300] for w in cluster.workers for line in w.log_path.read_text().splitlines()
            if _DEAD.search(line)]


def _stuck(cluster) -> str:
    kept = _dead_connection_failures(cluster)
    return (f"runs to end; {len(kept)} tasks failed on a connection known to be dead:\n"
            + "\n".join(kept[:5]) + f"\n{cluster.logs()}")


def test_postgres_refuses_connections_for_a_moment(tenant, tmp_path, capsys):
    """Twice: once while steps run (each worker's connections are cut in the middle of a
    step), once while the workers are idle between tasks, holding open connections. After
    each, every worker process must connect anew: once the database is back, a process's
    first query may still find its old connection cut (that task fails and its step is
    delivered again), but no task may fail on a connection already known to be dead."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    try:
        admin = psycopg.connect(superuser_dsn(), autocommit=True)
    except psycopg.Error as exc:
        service_missing(f"a PostgreSQL superuser connection ({exc})")
    cluster = Cluster(tmp_path)
    counts, run_ids, timings = Counter(), [], {}
    try:
        cluster.start(WORKERS)
        # 1. in the middle of steps
        first = create_runs(tenant, MIX)
        run_ids += first
        # (and every worker process to hold a connection: one that has had no task yet
        # would have nothing to lose)
        wait_until(lambda: steps_running(first, 2)
                   and _backends(admin, name, own_pid) >= WORKERS, timeout=30,
                   what=lambda: f"steps to run on every worker\n{cluster.logs()}")
        counts["in_step"] = StepRun.objects.filter(run__in=first, status="running").count()
        _refuse_for_a_moment(admin, name, own_pid, counts)
        timings["mid_step"] = wait_until(lambda: live_runs(first) == 0,
                                         timeout=RECOVERY_LIMIT_S, interval=0.2,
                                         what=lambda: _stuck(cluster))
        # 2. between tasks: every worker process holds an idle connection (the beat's
        # sweeps reach each of them every few seconds)
        wait_until(lambda: _backends(admin, name, own_pid) >= WORKERS, timeout=30,
                   what="every worker process to hold a connection")
        counts["idle_backends"] = _backends(admin, name, own_pid)
        _refuse_for_a_moment(admin, name, own_pid, counts)
        time.sleep(1)  # a task that was failing on the refused database finishes failing
        since = {w.log_path: w.log_path.stat().st_size for w in cluster.workers}
        second = create_runs(tenant, MIX)
        run_ids += second
        timings["idle"] = wait_until(lambda: live_runs(second) == 0,
                                     timeout=RECOVERY_LIMIT_S, interval=0.2,
                                     what=lambda: _stuck(cluster))
        time.sleep(2)  # a few more sweeps on every process
    finally:
        admin.close()
        cluster.stop()
    kept = _dead_connection_failures(cluster)
    assert not kept, (
        f"{len(kept)} tasks failed on a database connection already known to be dead: a "
        "worker process kept it after PostgreSQL accepted connections again\n"
        + "\n".join(kept[:10]))
    for worker in cluster.workers:
        after = worker.log_path.read_bytes()[since[worker.log_path]:].decode()
        failed = [line for line in after.splitlines()
                  if "raised unexpected: OperationalError" in line]
        assert len(failed) <= 1, f"{worker.log_path.name}: " + "\n".join(failed)
    stats = check_runs(run_ids)
    refusals = cluster.logs(tail=10**7).count("is not currently accepting connections")
    _report(capsys, f"postgres refused connections for {OUTAGE_S} s twice, with "
                    f"{counts['in_step']} steps running, then with {counts['idle_backends']} "
                    f"idle connections ({counts['terminated']} backends terminated, "
                    f"{refusals} refusals logged): the runs ended {timings['mid_step']:.1f} s "
                    f"and {timings['idle']:.1f} s after; {stats}")
    assert counts["terminated"] >= 2 * WORKERS, "the workers' connections were not cut"
