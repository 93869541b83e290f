"""Console speed: the queue and the run list with 10,000 open gates and 100,000 runs.

Seeds one tenant fast with bulk_create (bypassing the services: this is a read benchmark;
no audit rows are written), then renders the pages through Django's test Client many times
and prints p50/p95 server time and the SQL query count per page size. The query count must
not grow with the page size.

    .venv/bin/python bench/console.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fcore_bench_console \\
        .venv/bin/python bench/console.py

It starts from an empty database each time: SQLite at FCORE_VAR_DIR=var/bench-console, or
the PostgreSQL database named in DATABASE_URL, dropped and created again (use a scratch one).
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("FCORE_VAR_DIR", "var/bench-console")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
os.environ["FCORE_CELERY_EAGER"] = "1"
os.environ.setdefault("FCORE_LOG_LEVEL", "WARNING")


def fresh_database() -> None:
    """Drop and create the PostgreSQL database, or remove the SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        base, name = url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    else:
        path = Path(os.environ["FCORE_VAR_DIR"]) / "fcore.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


REUSE = "--reuse" in sys.argv  # measure again on the data of the previous invocation
if not REUSE:
    fresh_database()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from fcore.members import member_set  # noqa: E402
from fcore.models import Tenant  # noqa: E402
from gates.models import Approval, Gate, PolicyDecision  # noqa: E402
from runs.bundles import bundle_load  # noqa: E402
from runs.models import Run, StepRun, WorkflowDefinition  # noqa: E402

SLUG = "bench_console"
STEPS = ["step_1", "step_2", "step_3", "step_4", "step_5"]
BATCH = 5000
RULE = {"policy": "pt004_spend_review", "rule": "large-amount", "effect": "flag",
        "reason": "amount above 10,000 needs approval", "tier": 2}


def seed(runs: int, gates: int) -> Tenant:
    """`runs` runs (the first `gates` paused at an open gate), five steps each."""
    call_command("migrate", verbosity=0)
    bundle = Path("docs/examples/pt004.yaml").read_text()
    import yaml

    data = yaml.safe_load(bundle)
    data["tenant"] = SLUG
    bundle_load(data, actor="system:bench")
    tenant = Tenant.objects.get(slug=SLUG)
    member_set(tenant=tenant, username="bench_approver", groups=["approvers", "operators"])
    definition = WorkflowDefinition.objects.get(tenant=tenant, name="pt004_execution_spine")
    now, rng = timezone.now(), random.Random(7)
    done_states = ["completed"] * 8 + ["failed", "running"]
    with transaction.atomic():
        for start in range(0, runs, BATCH):
            chunk = []
            for i in range(start, min(start + BATCH, runs)):
                status = "paused" if i < gates else rng.choice(done_states)
                chunk.append(Run(tenant=tenant, definition=definition, status=status,
                                 input={"amount": 20000 + i}, created_by="user:olivia",
                                 current_step="step_2" if status == "paused" else "step_5"))
            Run.objects.bulk_create(chunk)
            steps = []
            for run in chunk:
                for index, step_id in enumerate(STEPS):
                    if run.status == "paused":
                        status = ["succeeded", "waiting"][index] if index < 2 else "pending"
                    else:
                        status = "succeeded"
                    steps.append(StepRun(run=run, step_id=step_id, step_type="external",
                                         index=index, after=[STEPS[index - 1]] if index else [],
                                         status=status))
            StepRun.objects.bulk_create(steps)
        paused = list(StepRun.objects.filter(run__tenant=tenant, run__status="paused",
                                             step_id="step_2").select_related("run"))
        decisions, opened = [], []
        for n, step in enumerate(paused):
            decisions.append(PolicyDecision(
                tenant=tenant, step_run=step, decision="flag", reason=RULE["reason"],
                tier=2, rules_triggered=[RULE], context={"input": step.run.input},
                evaluated_at=now))
            opened.append(Gate(
                tenant=tenant, run=step.run, step_run=step, source="policy",
                reason=RULE["reason"], requested_by="system:engine", required_approvals=2,
                approver_group="approvers",
                expires_at=now + timedelta(minutes=rng.randint(5, 60 * 72)),
                expires_in=86400 if n % 10 else None))
        PolicyDecision.objects.bulk_create(decisions, batch_size=BATCH)
        Gate.objects.bulk_create(opened, batch_size=BATCH)
        Approval.objects.bulk_create(
            [Approval(gate=g, actor="user:amira", decision="approve", comment="looks fine")
             for g in opened[::3]], batch_size=BATCH)
    with connection.cursor() as cursor:  # fresh statistics for the planner
        cursor.execute("ANALYZE")
    return tenant


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def measure(client: Client, url: str, repeat: int) -> tuple[float, float, int]:
    """(p50 ms, p95 ms, queries) for GET `url`."""
    for _ in range(3):
        assert client.get(url).status_code == 200, url
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return percentile(times, 50), percentile(times, 95), len(ctx.captured_queries)


PAGES = [
    ("queue", "/console/?per={per}"),
    ("queue, filtered, by age", "/console/?per={per}&workflow=pt004_execution_spine"
                                "&tier=2&sort=age"),
    ("runs", "/console/runs/?per={per}"),
    ("runs, status=completed", "/console/runs/?per={per}&status=completed"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--gates", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reuse", action="store_true",
                        help="skip seeding: measure the previous invocation's data again")
    parser.add_argument("--show-queries", action="store_true")
    args = parser.parse_args()
    # the test Client's host; no setup_test_environment(): its template instrumentation
    # (a signal and a context copy per render) is test-only cost a server never pays
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    started = time.perf_counter()
    if not args.reuse:
        seed(args.runs, args.gates)
    seeded = time.perf_counter() - started
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench_approver"))
    print(f"database   {connection.vendor}")
    print(f"seeded     {args.runs:,} runs ({args.runs * len(STEPS):,} steps), "
          f"{args.gates:,} open gates in {seeded:.1f} s")
    print(f"{'page':28} {'per page':>8} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for name, pattern in PAGES:
        for per in (25, 100):
            p50, p95, queries = measure(client, pattern.format(per=per), args.repeat)
            print(f"{name:28} {per:>8} {p50:>8.1f} {p95:>8.1f} {queries:>8}")
            if args.show_queries:
                with CaptureQueriesContext(connection) as ctx:
                    client.get(pattern.format(per=per))
                for q in ctx.captured_queries:
                    print(f"    {float(q['time']) * 1000:7.1f} ms  {q['sql'][:150]}")


if __name__ == "__main__":
    main()
