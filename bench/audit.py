"""Audit trail speed: events per second appended, and verified by `audit_verify`.

1. Append: `--append` events (default 20,000) through `audit.services.audit_append`, one
   transaction (one commit) per event, over streams of 25 events; then as many again with
   25 appends per transaction (the commit shared, as when a step's changes commit together).
2. Load: the rest of `--events` (default 1,000,000 in total) written in bulk (COPY on
   PostgreSQL, executemany on SQLite) with hashes computed by the same code, so that the
   verification has a million real links to walk. This is a loader, not a figure of FC.
3. Seal one checkpoint per tenant, then verify everything with `audit.verify.audit_verify`
   (what `python manage.py audit_verify` runs): chains and checkpoints.

    .venv/bin/python bench/audit.py                       # SQLite under var/bench-audit
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fcore_bench_audit \\
        .venv/bin/python bench/audit.py

It empties the audit tables of the database it is given: use a scratch one (the
PostgreSQL database is created if missing).
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("FCORE_VAR_DIR", "var/bench-audit")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")
os.environ.setdefault("FCORE_LOG_LEVEL", "WARNING")


def _ensure_database() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


_ensure_database()

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.checkpoints import checkpoints_seal_all  # noqa: E402
from audit.hashing import GENESIS_HASH, event_hash, format_at  # noqa: E402
from audit.immutability import triggers_suspended  # noqa: E402
from audit.jcs import canonical  # noqa: E402
from audit.services import audit_append  # noqa: E402
from audit.verify import audit_verify  # noqa: E402
from fcore.models import Tenant  # noqa: E402

PER_STREAM = 25
CODES = ["FC-RUN-001", "FC-POL-001", "FC-STEP-001", "FC-STEP-002", "FC-RUN-002"]


def event_data(i: int) -> dict:
    """Event data shaped like the engine's; one event in 50 carries a float (slow path)."""
    kind = i % 5
    if kind == 0:
        return {"run_id": f"{i:032x}", "workflow": "bench", "version": 1,
                "input_hash": f"{i:064x}", "idempotency_key": None,
                "steps": ["s1", "s2", "s3", "s4", "s5"]}
    if kind == 1:
        return {"step_id": f"s{i % 7}", "attempt": 1, "decision": "allow", "reason": "",
                "policy_id": 3, "policy_version": 2, "tier": 2,
                "rules_triggered": [{"policy": "limits", "rule": "big", "effect": "flag"}],
                "policy_versions": [{"policy_id": 3, "version": 2}]}
    if kind == 3:
        data = {"step_id": f"s{i % 7}", "attempt": 1, "output_hash": f"{i:064x}",
                "receipt_hash": f"{i + 1:064x}"}
        if i % 50 == 3:
            data["ratio"] = 1.5
        return data
    return {"step_id": f"s{i % 7}", "step_type": "noop", "attempt": 1,
            "note": "naïve ☃" if i % 10 == 2 else "ok"}


def reset(tenant_slug: str) -> Tenant:
    call_command("migrate", verbosity=0)
    with triggers_suspended(connection), connection.cursor() as cursor:
        for table in ("audit_logleaf", "audit_checkpointcursor", "audit_checkpoint",
                      "audit_auditevent", "audit_auditstream"):
            cursor.execute(f"DELETE FROM {table}")
    tenant, _ = Tenant.objects.get_or_create(slug=tenant_slug, defaults={"name": "Bench"})
    return tenant


def append(tenant: Tenant, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        with transaction.atomic():
            audit_append(tenant_id=tenant.id, stream=f"run/append-{i // PER_STREAM:07d}",
                         code=CODES[i % 5], actor="system:engine", data=event_data(i))
    return count / (time.perf_counter() - started)


def append_batched(tenant: Tenant, count: int) -> float:
    """Appends as a run's transaction makes them: one transaction per stream of 25."""
    started = time.perf_counter()
    for first in range(0, count, PER_STREAM):
        with transaction.atomic():
            for i in range(first, min(first + PER_STREAM, count)):
                audit_append(tenant_id=tenant.id, stream=f"run/batch-{first:07d}",
                             code=CODES[i % 5], actor="system:engine", data=event_data(i))
    return count / (time.perf_counter() - started)


def load(tenant: Tenant, count: int) -> float:
    """Bulk-write `count` more events, streams of PER_STREAM, hashed by the same code."""
    started = time.perf_counter()
    at = format_at(timezone.now())
    moment = timezone.now()
    streams = (count + PER_STREAM - 1) // PER_STREAM
    batch = 2000
    for first in range(0, streams, batch):
        names = [f"run/load-{s:07d}" for s in range(first, min(first + batch, streams))]
        rows, heads = [], {}
        for s, name in enumerate(names, start=first):
            prev = GENESIS_HASH
            for seq in range(1, PER_STREAM + 1):
                i = s * PER_STREAM + seq
                if i > count:
                    break
                data = event_data(i)
                digest = event_hash(prev_hash=prev, stream=name, seq=seq, code=CODES[i % 5],
                                    actor="system:engine", at=at, data=data)
                rows.append((name, seq, CODES[i % 5], at, canonical(data).decode(), prev,
                             digest))
                prev = digest
                heads[name] = (seq, digest)
        _write(tenant, heads, rows, moment)
    return count / (time.perf_counter() - started)


def _write(tenant, heads, rows, moment) -> None:
    from audit.models import AuditStream

    AuditStream.objects.bulk_create([
        AuditStream(tenant=tenant, name=name, head_seq=seq, head_hash=digest)
        for name, (seq, digest) in heads.items()])
    ids = dict(AuditStream.objects.filter(name__in=list(heads)).values_list("name", "id"))
    columns = ("stream_id", "tenant_id", "seq", "code", "actor", "at", "occurred_at", "data",
               "prev_hash", "hash")
    values = [(ids[name], tenant.id, seq, code, "system:engine", at, moment, data, prev, h)
              for name, seq, code, at, data, prev, h in rows]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor
            with raw.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO audit_auditevent ({', '.join(columns)}) "
                               f"VALUES ({marks})", values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--append", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="verification runs")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="scan processes, as `manage.py audit_verify --workers`")
    args = parser.parse_args()
    tenant = reset("bench_audit")
    print(f"database: {connection.vendor}")
    rate = append(tenant, args.append)
    print(f"append  (audit_append, one transaction each, {args.append:,} events): "
          f"{rate:,.0f} events/s")
    rate = append_batched(tenant, args.append)
    print(f"append  (audit_append, 25 per transaction, {args.append:,} events): "
          f"{rate:,.0f} events/s")
    loaded = load(tenant, max(args.events - 2 * args.append, 0))
    print(f"load    (bulk, not a product figure): {loaded:,.0f} events/s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_auditevent")
    checkpoints_seal_all()
    best = None
    for _ in range(args.repeat):
        report = audit_verify(workers=args.workers)
        assert report.ok, report.failures[:5]
        print(f"verify  (audit_verify: chains and checkpoints, {report.events:,} events, "
              f"{report.streams:,} streams): {report.seconds:.2f} s, "
              f"{report.events_per_second:,.0f} events/s")
        best = max(best or 0, report.events_per_second)
    print(f"best verify: {best:,.0f} events/s")


if __name__ == "__main__":
    main()
