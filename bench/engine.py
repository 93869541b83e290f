"""Governed steps per second end to end, on PostgreSQL + Redis with real Celery workers,
against bare Celery no-op tasks through the same broker and workers in the same invocation.

Each run is a five-step workflow of internal `noop` steps; every step is policy-checked
(two CEL policies apply), audited (FC-POL-001, FC-STEP-001, FC-STEP-002 on the run's hash
chain) and receipted, and every run is sealed. The clock runs from the first `run_create`
to the last run completed; the bare phase from the first task sent to the queue drained.
Runs are created, and bare tasks sent, by `--clients` threads at once (default 2), as API
clients would. A second phase runs `--language-runs` runs of `bench_language` (expressions,
a condition, a map of 10 and a child run; bench/workload.py) and prints its governed
steps/s beside.
Queries and commits are counted inside the workers (and in this process for run_create).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fcore_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/engine.py --runs 2000

It writes to the given database (use a scratch one; it is migrated) and empties the given
Redis database first.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
os.environ.setdefault("FCORE_LOG_LEVEL", "WARNING")
os.environ["FCORE_CELERY_EAGER"] = "0"

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402

from bench.workload import (  # noqa: E402
    LANGUAGE_STEPS,
    STEPS,
    language_input,
    setup,
    worker_argv,
)
from fcore.celery import app  # noqa: E402
from fcore.models import Tenant  # noqa: E402
from runs.models import Run  # noqa: E402
from runs.services import run_create  # noqa: E402

LOCAL = {"queries": 0, "commits": 0}
_LOCK = threading.Lock()


def _count_query(execute, sql, params, many, context):
    with _LOCK:
        LOCAL["queries"] += 1
    return execute(sql, params, many, context)


_commit = BaseDatabaseWrapper.commit


def _counted_commit(self):
    with _LOCK:
        LOCAL["commits"] += 1
    return _commit(self)


def start_workers(count: int, pool: str, concurrency: int) -> list[subprocess.Popen]:
    procs = []
    for n in range(count):
        log = open(ROOT / "var" / f"bench-worker-{n}.log", "w")
        argv = worker_argv(f"bench{n}", pool=pool, concurrency=concurrency,
                           loglevel=os.environ.get("BENCH_WORKER_LOG", "warning"))
        procs.append(subprocess.Popen(argv, env=os.environ, stdout=log,
                                      stderr=subprocess.STDOUT, cwd=ROOT))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # ready when each answers a ping
        replies = app.control.ping(timeout=0.5) or []
        if len(replies) >= count:
            return procs
    raise SystemExit("workers did not start; see var/bench-worker-*.log")


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all processes, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def worker_counts(workers: int) -> dict:
    """The workers' counters summed (bench/engine_worker.py answers `bench_counts`)."""
    replies = app.control.broadcast("bench_counts", reply=True, timeout=2, limit=workers)
    if len(replies) < workers:
        raise SystemExit(f"{len(replies)} of {workers} workers sent their counters")
    totals = {"queries": 0, "commits": 0, "tasks": 0, "connections": 0, "cpu_s": 0.0}
    for reply in replies:
        for counts in reply.values():
            for key in totals:
                totals[key] += counts[key]
    return totals


def _client(tenant: Tenant, numbers: range, counted: bool, workflow: str) -> None:
    """One API client: creates its runs one after the other on its own connection."""
    if counted:
        connection.execute_wrappers.append(_count_query)
    try:
        for i in numbers:
            run_create(tenant=tenant, workflow=workflow, actor="client:bench",
                       input=language_input(i) if workflow == "bench_language"
                       else {"amount": i})
    finally:
        connection.close()


def governed(tenant: Tenant, runs: int, clients: int = 1, counted: bool = False,
             workflow: str = "bench_noop") -> float:
    """Seconds from the first run created to the last of `runs` new runs completed."""
    completed = Run.objects.filter(tenant=tenant, status="completed",
                                   parent_run__isnull=True)  # child runs are counted in steps
    before = completed.count()  # the warm-up's runs are in the same tenant
    started = time.perf_counter()
    threads = [threading.Thread(target=_client,
                                args=(tenant, range(n, runs, clients), counted, workflow))
               for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    LOCAL["created_s"] = time.perf_counter() - started
    while True:
        done = completed.count() - before
        failed = Run.objects.filter(tenant=tenant).exclude(
            status__in=["completed", "running", "pending"]).count()
        if failed:
            raise SystemExit(f"{failed} runs did not complete")
        if done >= runs:
            return time.perf_counter() - started
        time.sleep(0.05)


def bare(tasks: int, clients: int) -> float:
    """The baseline, sent by as many client threads as the governed phase had."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def send(count: int) -> None:
        for _ in range(count):
            app.send_task("bench.noop")

    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(len(range(n, tasks, clients)),))
               for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while client.llen("celery") or client.hlen("unacked"):
        time.sleep(0.01)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--pool", default="solo", help="Celery pool of each worker")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2,
                        help="client threads creating runs at the same time")
    parser.add_argument("--language-runs", type=int, default=None,
                        help="runs of bench_language (default: a fifth of --runs; 0: none)")
    args = parser.parse_args()
    language_runs = args.runs // 5 if args.language_runs is None else args.language_runs
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        raise SystemExit("bench/engine.py needs DATABASE_URL=postgres://… and "
                         "CELERY_BROKER_URL=redis://…")
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    tenant = setup(f"bench_{int(time.time())}")
    procs = start_workers(args.workers, args.pool, args.concurrency)
    try:
        governed(tenant, 20)  # warm-up: compiled rules, connections
        time.sleep(0.5)
        before = worker_counts(args.workers)
        busy, own_cpu = machine_busy_s(), time.process_time()
        BaseDatabaseWrapper.commit = _counted_commit
        elapsed = governed(tenant, args.runs, args.clients, counted=True)
        busy, own_cpu = machine_busy_s() - busy, time.process_time() - own_cpu
        BaseDatabaseWrapper.commit = _commit
        after = worker_counts(args.workers)
        steps = args.runs * STEPS
        bare_busy, bare_own = machine_busy_s(), time.process_time()
        bare_elapsed = bare(steps, args.clients)
        bare_busy, bare_own = machine_busy_s() - bare_busy, time.process_time() - bare_own
        bare_workers = worker_counts(args.workers)["cpu_s"] - after["cpu_s"]
        language = None
        if language_runs:
            governed(tenant, 5, workflow="bench_language")  # warm-up
            language = governed(tenant, language_runs, args.clients, workflow="bench_language")
    finally:
        stop_workers(procs)
    queries = after["queries"] - before["queries"] + LOCAL["queries"]
    commits = after["commits"] - before["commits"] + LOCAL["commits"]
    rate, bare_rate = steps / elapsed, steps / bare_elapsed
    print(f"workers              {args.workers} x {args.pool} (concurrency "
          f"{args.concurrency}), PostgreSQL + Redis")
    print(f"runs x steps         {args.runs} x {STEPS} = {steps} governed noop steps")
    print(f"governed steps/s     {rate:,.0f}   ({elapsed:.1f} s end to end)")
    print(f"bare Celery tasks/s  {bare_rate:,.0f}   ({steps} no-op tasks, {bare_elapsed:.1f} s)")
    print(f"ratio governed/bare  {rate / bare_rate:.2f}")
    if language is not None:
        lang_steps = language_runs * LANGUAGE_STEPS
        print(f"language steps/s     {lang_steps / language:,.0f}   ({language_runs} runs x "
              f"{LANGUAGE_STEPS} governed steps: expressions, a when, a map of 10, "
              f"a child run; "
              f"{language:.1f} s)")
    print(f"queries per step     {queries / steps:.1f}")
    print(f"commits per step     {commits / steps:.2f}")
    print(f"tasks per step       {(after['tasks'] - before['tasks']) / steps:.2f}")
    print(f"worker DB connects   {after['connections'] - before['connections']}")
    workers_cpu = after["cpu_s"] - before["cpu_s"]
    print(f"runs created         {args.runs / LOCAL['created_s']:,.0f}/s by {args.clients} "
          f"client thread(s) ({LOCAL['created_s']:.1f} s)")
    print(f"CPU ms per step      {_split(busy, own_cpu, workers_cpu, steps)}")
    print(f"CPU ms per bare task {_split(bare_busy, bare_own, bare_workers, steps)}")
    cores = os.cpu_count()
    print(f"machine busy         governed {busy / (elapsed * cores):.0%}, "
          f"bare {bare_busy / (bare_elapsed * cores):.0%} of {cores} cores")


def _split(busy: float, client: float, workers: float, count: int) -> str:
    ms = 1000 / count
    return (f"{busy * ms:.2f} machine: client {client * ms:.2f}, workers {workers * ms:.2f}, "
            f"rest (PostgreSQL, Redis, other) {(busy - client - workers) * ms:.2f}")


if __name__ == "__main__":
    main()
