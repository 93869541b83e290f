"""Shared parts of the fault tests: a small cluster of real worker processes and a beat,
the workflows the faults hit, the journal of step executions, and the checks every run
must pass afterwards.

The subprocesses run with a short lease and a fast sweeper (`FAST_ENGINE`), so a worker
that dies mid-step is noticed within seconds: its step's lease runs out and the sweeper
(sent by the real beat) delivers the step again.
"""

import os
import signal
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dj_database_url
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEvent
from audit.verify import audit_verify
from fcore import celery_app
from runs.models import Run, StepRun
from runs.verification import run_receipts_verify
from tests.worker import Beat, Worker, require_broker, require_worker_mode

from .handlers import JOURNAL_ENV, SLOW

LEASE_S = 2
HANDLERS = ",".join([*settings.FCORE_STEP_HANDLERS, SLOW])
FAST_ENGINE = {"FCORE_STEP_LEASE_S": str(LEASE_S), "FCORE_SWEEP_INTERVAL_S": "1",
               "FCORE_CHECKPOINT_INTERVAL_S": "5", "FCORE_STEP_HANDLERS": HANDLERS}
TENANT = "tenant_faults"
STEP = f"python:{SLOW}"
TERMINAL = ("completed", "failed", "cancelled")

# fan-out / fan-in: prep → (left ‖ right) → join → tail
FANOUT = "fault_fanout"
# a step that fails once and is retried, then a tail
RETRY = "fault_retry"
# a step that keeps failing past its retries: the run fails and `never` is cancelled
FAILING = "fault_failing"
BUNDLE = {
    "tenant": TENANT,
    "workflows": [
        {"name": FANOUT, "steps": [
            {"id": "prep", "type": "noop"},
            {"id": "left", "type": STEP, "after": ["prep"], "input": {"wait_s": 1.2}},
            {"id": "right", "type": STEP, "after": ["prep"], "input": {"wait_s": 0.9}},
            {"id": "join", "type": "noop", "after": ["left", "right"]},
            {"id": "tail", "type": STEP, "after": ["join"], "input": {"wait_s": 0.8}},
        ]},
        {"name": RETRY, "steps": [
            {"id": "work", "type": STEP, "input": {"wait_s": 0.8, "succeed_on_attempt": 2},
             "retry": {"max_attempts": 3, "backoff": 0.2, "max_backoff": 0.4}},
            {"id": "tail", "type": STEP, "input": {"wait_s": 0.8}},
        ]},
        {"name": FAILING, "steps": [
            {"id": "work", "type": STEP, "input": {"wait_s": 0.8, "succeed_on_attempt": 9},
             "retry": {"max_attempts": 2, "backoff": 0.2, "max_backoff": 0.4}},
            {"id": "never", "type": "noop"},
        ]},
    ],
}
# what each workflow must end as, with the status of each of its steps and the attempt
# that ended it
EXPECTED = {
    FANOUT: ("completed", {s: ("succeeded", 1) for s in ("prep", "left", "right", "join",
                                                          "tail")}),
    RETRY: ("completed", {"work": ("succeeded", 2), "tail": ("succeeded", 1)}),
    FAILING: ("failed", {"work": ("failed", 2), "never": ("cancelled", 1)}),
}
MIX = [FANOUT, FANOUT, RETRY, FANOUT, FAILING, FANOUT]


def require_postgres_and_redis() -> None:
    """The fault tests need real processes on PostgreSQL and Redis: they belong to the
    PostgreSQL worker pass and skip on the embedded one (SQLite, file-system broker). A
    configured but unreachable broker is a missing service (a failure under
    FCORE_REQUIRE_SERVICES=1)."""
    require_worker_mode()
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith(
            "redis://"):
        pytest.skip("fault tests run on PostgreSQL + Redis (make test-postgres)")
    require_broker()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def superuser_dsn() -> str:
    """The configured PostgreSQL server's `postgres` database, as the configured user (a
    superuser on the test machines: it may stop a database accepting connections)."""
    url = dj_database_url.parse(settings.DATABASE_URL)
    return psycopg.conninfo.make_conninfo(
        host=url.get("HOST") or "127.0.0.1", port=url.get("PORT") or 5432,
        user=url.get("USER") or "postgres", password=url.get("PASSWORD") or None,
        dbname="postgres", connect_timeout=5)


def load_workflows():
    from fcore.models import Tenant
    from runs.bundles import bundle_load

    bundle_load(BUNDLE, actor="system:test", source="faults")
    return Tenant.objects.get(slug=TENANT)


def create_runs(tenant, workflows) -> list:
    from runs.services import run_create

    return [run_create(tenant=tenant, workflow=name, input={}, actor="user:faults")[0].pk
            for name in workflows]


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what=None) -> float:
    """Poll until `predicate()` is true; returns the seconds it took. `what` (a string, or
    a callable for an expensive one) says what was awaited when it times out."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {text}")
        time.sleep(interval)
    return time.monotonic() - started


def live_runs(run_ids) -> int:
    return Run.objects.filter(pk__in=run_ids).exclude(status__in=TERMINAL).count()


def steps_running(run_ids, at_least: int) -> bool:
    """At least this many `slow` steps are in the middle of their handler."""
    return StepRun.objects.filter(run__in=run_ids, status="running",
                                  step_type=STEP).count() >= at_least


# --- the journal of step executions ------------------------------------------------------

@dataclass
class Journal:
    """What `tests.faults.handlers.slow` wrote: per idempotency key, each execution's
    (time, pid, event) lines."""

    path: Path
    lines: list[tuple[float, int, str, str]] = field(default_factory=list)

    def read(self) -> "Journal":
        self.lines = []
        if self.path.exists():
            for raw in self.path.read_text().splitlines():
                at, pid, what, key = raw.split(" ")
                self.lines.append((float(at), int(pid), what, key))
        return self

    def in_handler(self) -> dict[int, tuple[str, float]]:
        """pid → (key, started at) of each process whose last journalled execution has
        started and not ended."""
        current: dict[int, tuple[str, float] | None] = {}
        for at, pid, what, key in self.lines:
            current[pid] = (key, at) if what == "start" else None
        return {pid: value for pid, value in current.items() if value is not None}

    def ended(self, pid: int, key: str) -> bool:
        return any(p == pid and k == key and w != "start" for _, p, w, k in self.lines)

    def starts(self, key: str) -> list[tuple[float, int]]:
        return [(at, pid) for at, pid, what, k in self.lines if k == key and what == "start"]


# --- processes ---------------------------------------------------------------------------

class Cluster:
    """Worker processes (each `-c 1` in its own process group) and one beat, with the fast
    engine settings and the journal in `log_dir`."""

    def __init__(self, log_dir: Path, *, env: dict | None = None):
        self.log_dir = log_dir
        self.journal = Journal(log_dir / "journal")
        self.env = {**FAST_ENGINE, JOURNAL_ENV: str(self.journal.path), **(env or {})}
        self.workers: list[Worker] = []
        self.dead: list[Worker] = []
        self.beat: Beat | None = None
        self.started = 0

    def start_worker(self, *, wait: bool = True) -> Worker:
        self.started += 1
        worker = Worker(concurrency=1, log_path=self.log_dir / f"worker{self.started}.log",
                        env=self.env, name=f"fault{self.started}@%h", own_group=True)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def start(self, workers: int) -> None:
        for _ in range(workers):
            self.start_worker(wait=False)
        for worker in self.workers:
            worker.wait_ready(timeout=60)
        self.beat = Beat(log_path=self.log_dir / "beat.log",
                         schedule=self.log_dir / "celerybeat-schedule", env=self.env)
        self.beat.wait_ready()

    def kill9(self, worker: Worker) -> None:
        """SIGKILL the worker's whole process group: the machine died."""
        worker.kill9()
        self.workers.remove(worker)
        self.dead.append(worker)

    def kill9_child(self, worker: Worker, pid: int) -> None:
        """SIGKILL one pool process; its worker notices, requeues its task and forks anew."""
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: f"pid:{pid} exited with 'signal 9" in worker.log_path.read_text(),
                   timeout=10, what=f"{worker.log_path.name} to notice its pool child died")

    def stop(self) -> None:
        for worker in self.workers + self.dead:
            worker.stop()
        if self.beat is not None:
            self.beat.stop()

    def logs(self, tail: int = 2500) -> str:
        parts = [f"--- {w.log_path.name}\n{w.log_path.read_text()[-tail:]}"
                 for w in self.workers + self.dead]
        if self.beat is not None:
            parts.append(f"--- beat.log\n{self.beat.log_path.read_text()[-tail:]}")
        return "\n".join(parts)


def purge_broker() -> None:
    """Empty the test broker: the ready queue and what killed workers left unacked."""
    celery_app.control.purge()
    with celery_app.connection_for_write() as conn:
        conn.default_channel.client.delete("unacked", "unacked_index", "unacked_mutex")


# --- the checks --------------------------------------------------------------------------

def _events(run, codes):
    return (AuditEvent.objects.filter(stream__name=run.stream_name, code__in=codes)
            .values_list("code", "data"))


def check_runs(run_ids) -> dict:
    """Every run in its correct terminal state; every step attempt started once and its
    result recorded once; one receipt per ended step, unique and chained; the run sealed
    once; every audit stream (and the beat's signed checkpoints) verified. Returns numbers
    for the report."""
    problems = []
    stats = Counter()
    for run in Run.objects.filter(pk__in=run_ids).select_related("definition"):
        name = run.definition.name
        status, step_expect = EXPECTED[name]
        stats["runs"] += 1
        stats[f"runs_{run.status}"] += 1
        if run.status != status:
            problems.append(f"{run.run_id} ({name}): {run.status} ({run.status_reason}), "
                            f"expected {status}")
        steps = {s.step_id: s for s in StepRun.objects.filter(run=run)}
        for step_id, (step_status, attempt) in step_expect.items():
            step = steps[step_id]
            if (step.status, step.attempt) != (step_status, attempt):
                problems.append(f"{run.run_id}:{step_id}: {step.status} attempt "
                                f"{step.attempt} ({step.error}), expected {step_status} "
                                f"attempt {attempt}")
            stats["redeliveries"] += step.redeliveries
            stats["max_redeliveries"] = max(stats["max_redeliveries"], step.redeliveries)
        started, recorded, succeeded = Counter(), Counter(), Counter()
        for code, data in _events(run, ["FC-STEP-001", "FC-STEP-002", "FC-STEP-003"]):
            key = (data["step_id"], data["attempt"])
            (started if code == "FC-STEP-001" else recorded)[key] += 1
            succeeded[data["step_id"]] += code == "FC-STEP-002"
        for key in set(started) | set(recorded):
            if started[key] != 1 or recorded[key] != 1:
                problems.append(f"{run.run_id}:{key}: started {started[key]}×, "
                                f"result recorded {recorded[key]}×")
        stats["results_recorded"] += sum(recorded.values())
        for step_id, (step_status, _) in step_expect.items():
            want = 1 if step_status == "succeeded" else 0
            if succeeded[step_id] != want:
                problems.append(f"{run.run_id}:{step_id}: {succeeded[step_id]} FC-STEP-002, "
                                f"expected {want}")
        receipts = [(s.receipt_seq, s.receipt_hash) for s in steps.values() if s.receipt_hash]
        ended = [s for s in steps.values() if s.status in ("succeeded", "failed")]
        if (len(receipts) != len(ended) or len({seq for seq, _ in receipts}) != len(receipts)
                or len({h for _, h in receipts}) != len(receipts)):
            problems.append(f"{run.run_id}: receipts {sorted(receipts)} for {len(ended)} "
                            "ended steps")
        seals = len(_events(run, ["FC-RUN-003"]))
        if seals != 1:
            problems.append(f"{run.run_id}: sealed {seals} times")
        verified = run_receipts_verify(run)
        if not verified["verified"]:
            problems.append(f"{run.run_id}: receipts {verified['failures']}")
        chain = audit_verify(stream=run.stream_name, checkpoints=False)
        if not chain.ok or chain.streams != 1:
            problems.append(f"{run.run_id}: audit stream {chain.failures}")
        stats["streams_verified"] += chain.ok
    everything = audit_verify()  # every stream, and the checkpoints the beat had signed
    if not everything.ok:
        problems.append(f"audit_verify: {everything.failures[:5]}")
    stats["checkpoints"] = everything.checkpoints
    assert stats["runs"] == len(run_ids), "runs went missing"
    assert not problems, "\n".join(problems[:30])
    return dict(stats)


def executions(journal: Journal) -> dict[str, int]:
    """How many times each idempotency key's handler started."""
    counts = defaultdict(int)
    for _, _, what, key in journal.lines:
        counts[key] += what == "start"
    return dict(counts)
