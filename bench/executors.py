"""The executors phase of `bench/api.py` (issue 20 #4): governed external steps through the
API, end to end.

`feeders` threads keep `runs` runs (default `4 × clients`) of the five-step external workflow
(`pt004_execution_spine`, amount 500: every step allowed by policy, decided, receipted and
audited) in flight; `clients` executor threads each loop `POST /workflows/tasks/claim`
(`max` tasks, `wait_s` 1) → `PATCH …/steps/{id}` with the lease token, for `seconds`.
Prints external steps reported per second, runs completed per second, and p50/p99 of
claim, report and create.
"""

import statistics
import threading
import time

from fcore.interfaces.client import FCClient, FCError

WORKFLOW = "pt004_execution_spine"


class Timings:
    def __init__(self):
        self.lock = threading.Lock()
        self.values: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.steps = 0
        self.completed = 0

    def timed(self, kind, func, *args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        except FCError as exc:
            with self.lock:
                self.errors.append(f"{kind}: {exc}")
            return None
        finally:
            with self.lock:
                self.values.setdefault(kind, []).append(time.perf_counter() - started)


def _client(base, creds, sub):
    return FCClient(base, kid=creds["kid"], secret=creds["secret"], tenant="tenant_omega",
                    sub=sub)


def _executor(base, creds, n, stop, timings, claim_max):
    fc = _client(base, creds, f"bench_exec_{n}")
    while not stop.is_set():
        answer = timings.timed("claim", fc.claim_tasks, workflows=[WORKFLOW], max=claim_max,
                               wait_s=1, lease_s=60)
        for task in (answer or {}).get("tasks", []):
            run = timings.timed("report", fc.report_step, task["run_id"], task["step_id"],
                                "succeeded", output={"step": task["step_id"]},
                                attempt=task["attempt"], lease_token=task["lease_token"])
            if run is not None:
                with timings.lock:
                    timings.steps += 1
                    timings.completed += run["status"] == "completed"
    fc.close()


def _feeder(base, creds, n, stop, timings, in_flight):
    fc = _client(base, creds, f"bench_feeder_{n}")
    i = 0
    while not stop.is_set():
        with timings.lock:
            started_runs = len(timings.values.get("create", []))
            backlog = started_runs - timings.completed
        if backlog >= in_flight:
            time.sleep(0.005)
            continue
        i += 1
        timings.timed("create", fc.create_run, WORKFLOW, {"amount": 500},
                      idempotency_key=f"exec-bench-{n}-{time.time_ns()}-{i}")
    fc.close()


def executor_phase(base: str, creds: dict, *, seconds: float, clients: int = 8,
                   claim_max: int = 5, runs: int | None = None, feeders: int = 2) -> dict:
    """Run the phase; returns its figures (and prints them)."""
    timings, stop = Timings(), threading.Event()
    in_flight = runs or 4 * clients
    threads = [threading.Thread(target=_feeder, args=(base, creds, n, stop, timings,
                                                       in_flight))
               for n in range(feeders)]
    threads += [threading.Thread(target=_executor,
                                 args=(base, creds, n, stop, timings, claim_max))
                for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    figures = {"steps": timings.steps, "steps_per_s": timings.steps / elapsed,
               "runs_completed_per_s": timings.completed / elapsed,
               "errors": timings.errors}
    print(f"executors: {clients} threads claim (max {claim_max}) + report, "
          f"{feeders} feeders keeping {in_flight} runs in flight, {seconds:.0f} s")
    for kind, values in sorted(timings.values.items()):
        values = sorted(values)
        p99 = statistics.quantiles(values, n=100)[98] * 1000 if len(values) > 1 else 0
        print(f"  {kind:<7} {len(values):>7} p50 {statistics.median(values) * 1000:6.1f} ms"
              f"  p99 {p99:6.1f} ms")
    print(f"governed external steps/s {figures['steps_per_s']:.1f}  "
          f"runs completed/s {figures['runs_completed_per_s']:.1f}  "
          f"errors {len(timings.errors)}")
    for error in timings.errors[:10]:
        print("  error:", error)
    return figures
