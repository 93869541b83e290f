"""Governed steps per second through the spine, in one process, against a bare baseline.

Each run is a five-step workflow of internal `noop` steps; every step is policy-checked
(two CEL policies apply), audited (FC-POL-001, FC-STEP-001, FC-STEP-002 on a hash chain)
and receipted. Celery runs eagerly here so that the figure is the engine's own cost; the
worker-based end-to-end benchmark belongs to the durable-engine work (bench/engine.py).

The baseline, measured in the same invocation on the same database, is a bare transaction
of the shape DESIGN §11 uses: one UPDATE and two INSERTs per step.

    .venv/bin/python bench/spine.py --runs 300
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fcore_bench .venv/bin/python bench/spine.py

It writes to FCORE_VAR_DIR=var/bench (SQLite) or the given database; use a scratch one.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("FCORE_VAR_DIR", "var/bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
os.environ["FCORE_CELERY_EAGER"] = "1"
os.environ.setdefault("FCORE_LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from bench.workload import STEPS, setup  # noqa: E402
from fcore.models import Tenant  # noqa: E402
from runs.models import Run  # noqa: E402
from runs.services import run_create  # noqa: E402


def governed(tenant: Tenant, runs: int) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        run, _ = run_create(tenant=tenant, workflow="bench_noop", input={"amount": i},
                            actor="client:bench")
        latencies.append(time.perf_counter() - t0)
        assert Run.objects.get(pk=run.pk).status == "completed"
    return time.perf_counter() - started, latencies


def baseline(steps: int) -> float:
    with connection.cursor() as cursor:  # real tables: commits cost what the engine's cost
        cursor.execute("DROP TABLE IF EXISTS bench_row")
        cursor.execute("DROP TABLE IF EXISTS bench_kv")
        cursor.execute("CREATE TABLE bench_row (id integer primary key, n integer)")
        cursor.execute("CREATE TABLE bench_kv (id integer, v text)")
        cursor.execute("INSERT INTO bench_row VALUES (1, 0)")
    started = time.perf_counter()
    for i in range(steps):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE bench_row SET n = n + 1 WHERE id = 1")
            cursor.execute("INSERT INTO bench_kv VALUES (%s, %s)", [i, "a"])
            cursor.execute("INSERT INTO bench_kv VALUES (%s, %s)", [i, "b"])
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_row")
        cursor.execute("DROP TABLE bench_kv")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    tenant = setup(f"bench_{int(time.time())}")
    governed(tenant, 10)  # warm-up: compiled rules, connections
    elapsed, latencies = governed(tenant, args.runs)
    steps = args.runs * STEPS
    base = baseline(steps)
    vendor = connection.vendor
    print(f"database             {vendor}")
    print(f"runs x steps         {args.runs} x {STEPS} = {steps} governed steps")
    print(f"governed steps/s     {steps / elapsed:,.0f}")
    print(f"run latency (5 steps, create to sealed)  p50 {percentile(latencies, 50) * 1000:.1f} ms"
          f"  p99 {percentile(latencies, 99) * 1000:.1f} ms")
    print(f"baseline tx/s        {steps / base:,.0f}  (UPDATE + 2 INSERT per transaction)")
    print(f"ratio governed/bare  {(steps / elapsed) / (steps / base):.3f}")


if __name__ == "__main__":
    main()
