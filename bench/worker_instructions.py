"""Instructions one engine worker executes per governed step, counted by valgrind's
callgrind: a figure that does not move with this virtual machine's speed, unlike the
rates of bench/engine.py (which vary by ±15 % from one minute to the next here).

One Celery worker (`bench/engine_worker.py`, `solo` pool) runs under callgrind with
instrumentation off; it takes 20 warm-up runs of the bench workload (bench/workload.py),
then the count is switched on (`callgrind_control -i on`) for `--runs` more runs and off
again once they have completed. Printed: user-space instructions per step (the worker's
Python, psycopg, libpq; not PostgreSQL's or the kernel's work). Needs valgrind
(`apt-get install valgrind`); under a minute for the default 60 runs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fcore_bench_instr \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/worker_instructions.py

It writes to the given database (use a scratch one; it is migrated) and empties the given
Redis database first. Policies get a 60 s evaluation limit: under callgrind CEL runs 50 times
slower than the 50 ms default allows.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
os.environ.setdefault("FCORE_LOG_LEVEL", "WARNING")
os.environ["FCORE_CELERY_EAGER"] = "0"
os.environ["FCORE_POLICY_TIME_LIMIT_MS"] = "60000"

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from bench.workload import STEPS, setup, worker_argv  # noqa: E402
from fcore.celery import app  # noqa: E402
from runs.models import Run  # noqa: E402
from runs.services import run_create  # noqa: E402

WARM_UP = 20


def create_and_wait(tenant, count: int, done_before: int) -> None:
    for i in range(count):
        run_create(tenant=tenant, workflow="bench_noop", input={"amount": i},
                   actor="client:bench")
    while Run.objects.filter(tenant=tenant, status="completed").count() < done_before + count:
        if Run.objects.filter(tenant=tenant, status="failed").exists():
            raise SystemExit("a run failed; see the worker's log")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        raise SystemExit("needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://…")
    if not shutil.which("valgrind"):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    tenant = setup(f"bench_instr_{int(time.time())}")
    out = Path(tempfile.mkdtemp(prefix="fc-callgrind-"))
    log = open(out / "worker.log", "w")
    worker = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={out / 'callgrind.out'}", *worker_argv("instr")],
        cwd=ROOT, env=os.environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not (app.control.ping(timeout=1) or []):
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {out / 'worker.log'}")
        create_and_wait(tenant, WARM_UP, 0)
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(worker.pid)], check=True, capture_output=True)
        create_and_wait(tenant, args.runs, WARM_UP)
        subprocess.run([*control, "off", str(worker.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(worker.pid)], check=True,
                       capture_output=True)
    finally:
        worker.terminate()
        worker.wait(timeout=300)
    counted = [int(m.group(1)) for path in out.glob("callgrind.out*")
               for m in re.finditer(r"^(?:summary|totals): (\d+)", path.read_text(), re.M)]
    steps = args.runs * STEPS
    print(f"runs x steps         {args.runs} x {STEPS} = {steps} governed noop steps, one worker")
    print(f"instructions/step    {max(counted) / steps / 1e6:.2f} M (worker, user space)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
