"""A Celery worker for bench/engine.py: the product's worker (`celery -A fcore worker`) plus
two things only the benchmark needs: a bare no-op task for the baseline, and counters of
SQL statements, commits, tasks and CPU time that the benchmark asks for between its phases
(a remote-control command, `bench_counts`).
With BENCH_PROFILE=DIR each worker writes a cProfile of its life to DIR/worker-PID.prof.

    python bench/engine_worker.py worker -P solo -c 1 …   (started by bench/engine.py)
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fcore.settings")

import django  # noqa: E402

django.setup()

from celery.signals import task_postrun  # noqa: E402
from celery.worker.control import inspect_command  # noqa: E402
from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

from fcore.celery import app  # noqa: E402

COUNTS = {"queries": 0, "commits": 0, "tasks": 0, "connections": 0}


def _count_query(execute, sql, params, many, context):
    COUNTS["queries"] += 1
    return execute(sql, params, many, context)


def _on_connection(sender, connection, **kwargs):
    COUNTS["connections"] += 1
    if _count_query not in connection.execute_wrappers:  # once per wrapper, not per reconnect
        connection.execute_wrappers.append(_count_query)


connection_created.connect(_on_connection)
_commit = BaseDatabaseWrapper.commit


def _counted_commit(self):
    COUNTS["commits"] += 1
    return _commit(self)


BaseDatabaseWrapper.commit = _counted_commit


@task_postrun.connect
def _count_task(**kwargs):
    COUNTS["tasks"] += 1


@inspect_command()
def bench_counts(state):
    """The counters so far, and the CPU time this worker process has used."""
    return dict(COUNTS, cpu_s=time.process_time())


@app.task(name="bench.noop")
def bare_noop() -> None:
    """The baseline: a Celery task that does nothing (acknowledged late, like the engine's)."""


if __name__ == "__main__":
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        _prof = cProfile.Profile()
        _prof.enable()
        try:
            app.worker_main(sys.argv[1:])
        finally:
            _prof.disable()
            _prof.dump_stats(Path(os.environ["BENCH_PROFILE"]) / f"worker-{os.getpid()}.prof")
    else:
        app.worker_main(sys.argv[1:])
