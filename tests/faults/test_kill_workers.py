"""kill -9 of Celery workers in the middle of steps, on PostgreSQL + Redis (issue 6 #7).

Three workers (`-c 1`, each in its own process group) and a real beat run the engine with
a 2 s lease and a 1 s sweeper, while the test keeps two runs going. The steps that take
time run `tests.faults.handlers.slow`, which journals when each execution starts and
ends with its process id; the test kills a worker only while one of its pool processes is
inside such a handler, never the same step attempt twice — alternately the whole worker
(main process and pool process: the machine died; its message stays unacknowledged, the
step's lease runs out and the sweeper delivers it again) and only its pool process (the
OOM killer; the worker requeues the task, `task_reject_on_worker_lost`). A dead worker is
replaced.

A kill counts only when the journal shows the handler started and never ended in the
killed process. Afterwards each killed step attempt was executed again and its result
recorded once; every run is in its correct terminal state, no step attempt started or
recorded twice, every receipt chain and audit stream verifies.
"""

import itertools
import time

import pytest

from runs.models import Run, StepRun

from .helpers import (
    MIX,
    Cluster,
    check_runs,
    create_runs,
    executions,
    live_runs,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 3
KILLS = 24             # kills that landed in the middle of a step
IN_FLIGHT = 2          # runs kept going at once: the queue stays shorter than a lease
KILL_GAP_S = 0.8       # at most one kill this often
IN_STEP_FOR_S = 0.15   # a handler this long into its step is killed, not one just starting
FEED_LIMIT_S = 120     # fail if the kills take longer than this
DRAIN_LIMIT_S = 90


def _victim(cluster, killed: set):
    """(worker, pid, key) of a pool process in the middle of a step not killed before."""
    busy = cluster.journal.read().in_handler()
    ready = [w for w in cluster.workers if w.is_ready()]
    if len(ready) < 2:  # keep one worker going
        return None
    for worker in ready:
        for pid in worker.pool_children():
            key, since = busy.get(pid, (None, 0.0))
            if key and key not in killed and time.time() - since >= IN_STEP_FOR_S:
                return worker, pid, key
    return None


def test_kill_9_workers_in_the_middle_of_steps(tenant, tmp_path, capsys):
    cluster = Cluster(tmp_path)
    began = time.monotonic()
    kills = []  # (mode, key, pid, monotonic time)
    late = 0    # kills that came after the handler had ended: not counted
    run_ids = []
    try:
        cluster.start(WORKERS)
        plan = itertools.cycle(MIX)
        modes = itertools.cycle(["group", "child", "group"])
        last_kill = 0.0
        feed_started = time.monotonic()
        while len(kills) < KILLS:
            assert time.monotonic() - feed_started < FEED_LIMIT_S, (
                f"only {len(kills)} kills in {FEED_LIMIT_S} s\n{cluster.logs()}")
            wanted = IN_FLIGHT - live_runs(run_ids)
            if wanted > 0:
                run_ids += create_runs(tenant, [next(plan) for _ in range(wanted)])
            victim = _victim(cluster, {k for _, k, _, _ in kills}) \
                if time.monotonic() - last_kill >= KILL_GAP_S else None
            if victim is not None:
                worker, pid, key = victim
                mode = next(modes)
                if mode == "child":
                    cluster.kill9_child(worker, pid)
                else:
                    cluster.kill9(worker)
                    cluster.start_worker(wait=False)
                last_kill = time.monotonic()
                if cluster.journal.read().ended(pid, key):
                    late += 1
                else:
                    kills.append((mode, key, pid, last_kill))
            time.sleep(0.05)
        feeding_s = time.monotonic() - feed_started
        drain_s = wait_until(lambda: live_runs(run_ids) == 0, timeout=DRAIN_LIMIT_S,
                             interval=0.2,
                             what=lambda: f"{len(run_ids)} runs to end\n{cluster.logs()}")
    finally:
        cluster.stop()
        (tmp_path / "kills.log").write_text("".join(
            f"{at - began:7.2f} {mode:5} pid {pid} {key}\n" for mode, key, pid, at in kills))

    stats = check_runs(run_ids)
    journal = cluster.journal.read()
    runs = {str(r.run_id): r.pk for r in Run.objects.filter(pk__in=run_ids)}
    problems = []
    for mode, key, pid, _ in kills:
        run_id, step_id, attempt = key.split(":")
        step = StepRun.objects.get(run_id=runs[run_id], step_id=step_id)
        again = [p for _, p in journal.starts(key) if p != pid]
        if not again:
            problems.append(f"{key} ({mode} kill of pid {pid}) was never executed again")
        if mode == "group" and step.redeliveries == 0:
            problems.append(f"{key}: its worker died but the sweeper did not deliver it again")
    assert not problems, "\n".join(problems)

    by_mode = {m: sum(1 for k in kills if k[0] == m) for m in ("group", "child")}
    counts = executions(journal)
    with capsys.disabled():
        print(f"\n[faults] kill -9 mid-step: {len(kills)} {by_mode} (+{late} too late to "
              f"count) in {feeding_s:.1f} s over {len(run_ids)} runs, {cluster.started} "
              f"workers started; drained in {drain_s:.1f} s; {sum(counts.values())} handler "
              f"executions for {len(counts)} step attempts; {stats}; "
              f"total {time.monotonic() - began:.1f} s")
    assert len(kills) >= 20
    assert by_mode["group"] >= 10 and by_mode["child"] >= 5
