"""The vote phase of `bench/api.py` (issue 20 #4): on an idle server, one approval vote →
the internal step after the approval step started.

For each of `count` runs of `bench_vote` (bench/vote.yaml), one at a time: create the run,
wait until its gate is open, then vote approve and take the time from sending the vote to
the `started_at` the server recorded for the step `next` (one machine, one clock), and the
vote's own latency. Prints p50/p99 of both.
"""

import statistics
import time
from datetime import datetime

from fcore.interfaces.client import FCClient

WORKFLOW = "bench_vote"


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def vote_phase(base: str, creds: dict, *, count: int = 50) -> dict:
    requester = FCClient(base, kid=creds["kid"], secret=creds["secret"],
                         tenant="tenant_omega", sub="bench_requester")
    approver = requester.with_sub("bench_approver")
    to_start, votes = [], []
    for i in range(count):
        run = requester.create_run(WORKFLOW, {"n": i}, idempotency_key=f"vote-{time.time_ns()}")
        run = requester.wait_for(run["run_id"], lambda r: any(
            g["status"] == "open" for g in r["gates"]), timeout=30)
        gate_id = next(g["gate_id"] for g in run["gates"] if g["status"] == "open")
        sent = time.time()
        approver.vote(run["run_id"], gate_id, "approve", comment="bench")
        answered = time.time()
        run = requester.wait_for(run["run_id"], lambda r: any(
            s["step_id"] == "next" and s["started_at"] for s in r["steps"]), timeout=30)
        started = next(s["started_at"] for s in run["steps"] if s["step_id"] == "next")
        to_start.append(datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
                        - sent)
        votes.append(answered - sent)
    requester.close()
    approver.close()
    ms = {name: sorted(v * 1000 for v in values)
          for name, values in (("vote", votes), ("to_start", to_start))}
    print(f"vote → next internal step started, {count} runs one at a time (idle server):")
    print(f"  vote answered      p50 {statistics.median(ms['vote']):6.1f} ms  "
          f"p99 {_p(ms['vote'], 99):6.1f} ms")
    print(f"  next step started  p50 {statistics.median(ms['to_start']):6.1f} ms  "
          f"p99 {_p(ms['to_start'], 99):6.1f} ms  (from sending the vote)")
    return {"vote_p50_ms": statistics.median(ms["vote"]),
            "to_start_p50_ms": statistics.median(ms["to_start"])}
