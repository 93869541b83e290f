"""The workload bench/spine.py and bench/engine.py push: a five-step `noop` workflow under two
CEL policies (import after `django.setup()`), and the worker command the benchmarks start.

`bench_language` is the same under the workflow language (docs/workflows.md): a plan step,
a conditional step whose input is expressions over the plan's output, a map of
`MAP_ITEMS` instances over a list the plan produced, a step reading the map's output, and
a `type: workflow` step whose child run (`bench_child`, one step) archives the total:
`LANGUAGE_STEPS` governed (decided, audited, receipted) steps per run, the child's
included (the child run is sealed on its own chain too)."""

import sys
from pathlib import Path

from django.core.management import call_command

from fcore.models import Tenant
from runs.bundles import bundle_load

STEPS = 5
MAP_ITEMS = 10
# plan, pay, done, the instances (the map step is not decided), archive and the child's step
LANGUAGE_STEPS = 3 + MAP_ITEMS + 2
LANGUAGE = [
    {"id": "plan", "type": "python:runs.examples.echo"},
    {"id": "pay", "type": "noop", "when": "steps.plan.output.input.amount >= 0",
     "input": {"amount": "=steps.plan.output.input.amount", "currency": "EUR",
               "payee": "=steps.plan.output.idempotency_key"}},
    {"id": "notify", "type": "noop", "map": "steps.plan.output.input.recipients",
     "input": {"to": "=item", "n": "=index", "amount": "=steps.plan.output.input.amount"}},
    {"id": "done", "type": "noop", "input": {"sent": "=steps.notify.output.items.size()"}},
    {"id": "archive", "type": "workflow", "workflow": "bench_child",
     "input": {"sent": "=steps.notify.output.items.size()"}},
]
CHILD = [{"id": "store", "type": "noop", "input": {"sent": "=run.input.sent"}}]


def setup(slug: str) -> Tenant:
    call_command("migrate", verbosity=0)
    bundle_load({
        "tenant": slug,
        "workflows": [{"name": "bench_noop", "steps": [
            {"id": f"s{i}", "type": "noop"} for i in range(1, STEPS + 1)]},
            {"name": "bench_child", "steps": CHILD},
            {"name": "bench_language", "steps": LANGUAGE}],
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


def language_input(i: int) -> dict:
    """The input of the i-th `bench_language` run: an amount and `MAP_ITEMS` recipients."""
    return {"amount": i, "recipients": [f"r{n}@example.org" for n in range(MAP_ITEMS)]}


def worker_argv(name: str, *, pool: str = "solo", concurrency: int = 1,
                loglevel: str = "warning") -> list[str]:
    """The command of one bench worker (bench/engine_worker.py), Celery node `name`."""
    return [sys.executable, str(Path(__file__).resolve().parent / "engine_worker.py"),
            "worker", "-P", pool, "-c", str(concurrency), "-l", loglevel, "--without-gossip",
            "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"]
