"""Load: mixed API traffic against the web server on PostgreSQL, with a real Celery worker.

Starts `manage.py web` (gunicorn as `fc web` runs it: 2 gthread workers, their threads
sharing a connection pool; docs/operations.md, "Worker model") and `celery worker`
(2 processes) on a scratch PostgreSQL database, then for --seconds (default 120) drives,
from --clients threads:

  create a run · read it · report its external steps · resolve its gate (second actor)

and then, in the same invocation, a trivial `/healthz` endpoint for --health-seconds
(default 30), and prints throughput, p50/p99 latency per endpoint, the error count (must
be 0), the ratio of API throughput to /healthz throughput, and the CPU per request by
process (as bench/engine.py prints it: the machine, the client threads, the web server,
the Celery worker, and the rest — PostgreSQL, Redis, other). Then, on the idle server,
--votes single votes each releasing an approval step, timed to the start of the internal
step after it (bench/votes.py), and --executor-seconds of executors claiming and
reporting external steps (bench/executors.py), with the CPU per governed step.

    .venv/bin/python bench/api.py --seconds 120
    (needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379; drops and creates the
     database fcore_bench_api)

--profile DIR samples the web server's workers with py-spy (when installed) during the
mixed phase and writes DIR/web-<pid>.txt, collapsed stacks (flame graph input).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.executors import executor_phase  # noqa: E402
from bench.votes import vote_phase  # noqa: E402
from fcore.interfaces.client import FCClient, FCError  # noqa: E402
from fcore.management.commands.serve import _descendants  # noqa: E402

DB = os.environ.get("FCORE_BENCH_DB", "fcore_bench_api")
BROKER = os.environ.get("FCORE_BENCH_BROKER", "redis://127.0.0.1:6379/12")
BIN = Path(sys.executable).parent


def sh(*args, env=None, **kwargs):
    return subprocess.run(args, env=env, cwd=ROOT, check=True, capture_output=True, text=True,
                          **kwargs)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def timed(self, kind, func, *args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        except (FCError, httpx.HTTPError) as exc:
            with self.lock:
                self.errors.append(f"{kind}: {exc}")
            return None
        finally:
            with self.lock:
                self.latencies.setdefault(kind, []).append(time.perf_counter() - started)

    def all(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


def api_worker(base, creds, stop, stats, n):
    executor = FCClient(base, kid=creds["kid"], secret=creds["secret"],
                        tenant="tenant_omega", sub=f"executor_{n}")
    approver = executor.with_sub(f"approver_{n}")
    i = 0
    while not stop.is_set():
        i += 1
        amount = 25000 if i % 3 == 0 else 500  # every third run is flagged at step_2
        run = stats.timed("create", executor.create_run, "pt004_execution_spine",
                          {"amount": amount}, idempotency_key=f"b{n}-{i}")
        if run is None:
            continue
        run_id = run["run_id"]
        for step in ("step_1", "step_2", "step_3", "step_4", "step_5"):
            if stop.is_set():
                return
            state = None
            for _ in range(200):
                state = stats.timed("read", executor.get_run, run_id)
                if state is None:
                    break
                current = {s["step_id"]: s["status"] for s in state["steps"]}
                if current[step] == "running":
                    break
                if state["status"] == "paused":
                    gates = [g for g in state["gates"] if g["status"] == "open"]
                    for gate in gates:
                        stats.timed("vote", approver.vote, run_id, gate["gate_id"],
                                    "approve", comment="load")
                time.sleep(0.01)
            stats.timed("report", executor.report_step, run_id, step, "succeeded",
                        output={"n": i})


def health_worker(base, stop, stats):
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            stats.timed("healthz", lambda: client.get("/healthz").raise_for_status())


def drive(work, seconds, clients):
    """Run `work(n, stop, stats)` in `clients` threads for `seconds`."""
    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=work, args=(n, stop, stats)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return stats, time.perf_counter() - started


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all processes, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its living descendants so far."""
    total = 0
    for one in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU spent between `start()` and `stop()`: the machine's, this process's, each
    server's (process trees)."""

    def __init__(self, procs: dict):
        self.procs = procs

    def _now(self):
        return (machine_busy_s(), time.process_time(),
                {name: tree_cpu_s(p.pid) for name, p in self.procs.items()})

    def start(self):
        self.began = self._now()

    def stop(self):
        ended = self._now()
        self.busy, self.client = ended[0] - self.began[0], ended[1] - self.began[1]
        self.servers = {k: ended[2][k] - self.began[2][k] for k in self.procs}

    def split(self, count: int) -> str:
        ms = 1000 / max(count, 1)
        parts = ", ".join(f"{k} {v * ms:.2f}" for k, v in self.servers.items())
        rest = self.busy - self.client - sum(self.servers.values())
        return (f"{self.busy * ms:.2f} machine: client {self.client * ms:.2f}, {parts}, "
                f"rest (PostgreSQL, Redis, other) {rest * ms:.2f}")


class Vacuum(threading.Thread):
    """`VACUUM ANALYZE` of the scratch database every `every` seconds: what autovacuum
    (PostgreSQL's default) does for a server in service, where this machine's PostgreSQL
    runs with autovacuum off. Without it the tables a phase fills keep the statistics of
    empty ones and the dead rows of every update, and the planner's choices degrade as the
    phase goes on (the claims' search went from 0.3 to 6 ms after a minute of traffic)."""

    def __init__(self, every: float):
        super().__init__(daemon=True)
        self.every, self.stopped = every, threading.Event()

    def run(self):
        while not self.stopped.wait(self.every):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DB, "-qc",
                            "VACUUM ANALYZE"], check=False, capture_output=True)


def profile_start(web: subprocess.Popen, out: str | None, seconds: int) -> list:
    """py-spy on each web worker (the gunicorn children) for `seconds`, if asked."""
    spy = BIN / "py-spy"
    if not out:
        return []
    if not spy.exists():
        print("--profile: py-spy is not installed (pip install py-spy); not profiling")
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([str(spy), "record", "--format", "raw", "--nonblocking",
                              "-d", str(seconds), "-r", "200", "-p", str(pid),
                              "-o", str(Path(out) / f"web-{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in _descendants(web.pid)]


def report(name, stats, elapsed):
    lat = sorted(stats.all())
    rate = len(lat) / elapsed
    p50 = statistics.median(lat) * 1000 if lat else 0
    p99 = statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) > 1 else 0
    print(f"{name:<8} {len(lat):>7} requests  {rate:>8.1f} req/s  p50 {p50:6.1f} ms  "
          f"p99 {p99:6.1f} ms  errors {len(stats.errors)}")
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--health-seconds", type=int, default=30)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--web-workers", type=int, default=2,
                        help="gunicorn worker processes (fc web --workers)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the web workers into DIR")
    parser.add_argument("--executor-seconds", type=int, default=30,
                        help="the executors phase (bench/executors.py); 0 skips it")
    parser.add_argument("--executor-runs", type=int, default=None,
                        help="runs the executors phase keeps in flight (default 4 × clients)")
    parser.add_argument("--executor-feeders", type=int, default=2,
                        help="threads creating the executors phase's runs")
    parser.add_argument("--vacuum-every", type=float, default=20,
                        help="seconds between VACUUM ANALYZE runs of the scratch database, "
                             "standing in for autovacuum (0: none)")
    parser.add_argument("--votes", type=int, default=50,
                        help="runs of the vote phase (bench/votes.py); 0 skips it")
    args = parser.parse_args()
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
           "CELERY_BROKER_URL": BROKER, "FCORE_VAR_DIR": "var/bench-api",
           "FCORE_API_RATE": "1000000/min", "FCORE_LOG_LEVEL": "WARNING"}
    sh("psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE IF EXISTS {DB}")
    sh("psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {DB}")
    manage = [str(BIN / "python"), "manage.py"]
    sh(*manage, "migrate", "--noinput", env=env)
    sh(*manage, "load_workflows", "docs/examples/pt004.yaml", "bench/vote.yaml", env=env)
    creds = json.loads(sh(*manage, "create_api_client", "--tenant", "tenant_omega", "--name",
                          "bench", "--scopes", "runs:read runs:write gates:request "
                          "gates:resolve audit:read tasks:claim", env=env).stdout)
    servers = {
        "web": subprocess.Popen([*manage, "web", "--port", str(args.port),
                                 "--workers", str(args.web_workers)], cwd=ROOT, env=env),
        "worker": subprocess.Popen([str(BIN / "celery"), "-A", "fcore", "worker", "-c", "2",
                                    "-l", "warning"], cwd=ROOT, env=env),
    }
    procs = list(servers.values())
    cpu = Cpu(servers)
    vacuum = Vacuum(args.vacuum_every)
    if args.vacuum_every:
        vacuum.start()
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(1)  # the workers have forked
        spies = profile_start(servers["web"], args.profile, args.seconds)
        cpu.start()
        api_stats, api_elapsed = drive(
            lambda n, stop, stats: api_worker(base, creds, stop, stats, n), args.seconds,
            args.clients)
        cpu.stop()
        api_cpu, api_busy = cpu.split(len(api_stats.all())), cpu.busy
        for spy in spies:
            spy.wait(timeout=60)
        cpu.start()
        health_stats, health_elapsed = drive(
            lambda n, stop, stats: health_worker(base, stop, stats), args.health_seconds,
            args.clients)
        cpu.stop()
        health_cpu = cpu.split(len(health_stats.all()))
        print(f"gunicorn {args.web_workers} gthread workers (FCORE_WEB_THREADS threads "
              f"each, pooled connections), PostgreSQL, {args.clients} client threads: "
              f"API {args.seconds} s, /healthz {args.health_seconds} s")
        for kind, values in sorted(api_stats.latencies.items()):
            ordered = sorted(values)
            p99 = statistics.quantiles(ordered, n=100)[98] if len(ordered) > 1 else ordered[0]
            print(f"  {kind:<7} {len(values):>7} {len(values) / api_elapsed:8.1f} req/s  "
                  f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms")
        api_rate = report("api", api_stats, api_elapsed)
        health_rate = report("healthz", health_stats, health_elapsed)
        print(f"ratio api/healthz {api_rate / health_rate:.3f}")
        print(f"CPU ms per API request     {api_cpu}")
        print(f"CPU ms per /healthz        {health_cpu}")
        cores = os.cpu_count()
        print(f"machine busy               API {api_busy / (api_elapsed * cores):.0%}, "
              f"/healthz {cpu.busy / (health_elapsed * cores):.0%} of {cores} cores")
        if args.votes:
            vote_phase(base, creds, count=args.votes)
        if args.executor_seconds:
            cpu.start()
            executors = executor_phase(base, creds, seconds=args.executor_seconds,
                                       clients=args.clients, runs=args.executor_runs,
                                       feeders=args.executor_feeders)
            cpu.stop()
            print(f"CPU ms per governed step   {cpu.split(executors['steps'])}")
            print(f"machine busy               executors "
                  f"{cpu.busy / (args.executor_seconds * cores):.0%} of {cores} cores")
            api_stats.errors += executors["errors"]
        for error in (api_stats.errors + health_stats.errors)[:10]:
            print("  error:", error)
        if api_stats.errors or health_stats.errors:
            sys.exit(1)
    finally:
        vacuum.stopped.set()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
