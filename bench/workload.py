"""The workload bench/spine.py and bench/engine.py push: a five-step `noop` workflow under two
CEL policies (import after `django.setup()`), and the worker command the benchmarks start."""

import sys
from pathlib import Path

from django.core.management import call_command

from fcore.models import Tenant
from runs.bundles import bundle_load

STEPS = 5


def setup(slug: str) -> Tenant:
    call_command("migrate", verbosity=0)
    bundle_load({
        "tenant": slug,
        "workflows": [{"name": "bench_noop", "steps": [
            {"id": f"s{i}", "type": "noop"} for i in range(1, STEPS + 1)]}],
        "policies": [
            {"name": "limits", "tier": 2, "rules": [
                {"id": "big", "effect": "flag",
                 "when": "has(input.amount) && input.amount > 1000000"},
                {"id": "blocked", "effect": "deny",
                 "when": 'has(input.vendor) && input.vendor == "x"'}]},
            {"name": "hours", "tier": 1, "rules": [
                {"id": "late", "effect": "flag", "when": 'step.type == "approval"'}]},
        ],
    }, actor="system:bench")
    return Tenant.objects.get(slug=slug)


def worker_argv(name: str, *, pool: str = "solo", concurrency: int = 1,
                loglevel: str = "warning") -> list[str]:
    """The command of one bench worker (bench/engine_worker.py), Celery node `name`."""
    return [sys.executable, str(Path(__file__).resolve().parent / "engine_worker.py"),
            "worker", "-P", pool, "-c", str(concurrency), "-l", loglevel, "--without-gossip",
            "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"]
