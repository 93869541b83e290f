"""Median time per whole policy decision for 1, 10 and 100 applicable rules.

A whole decision is what the engine does per step: convert the context once (run, step,
input, actor, tenant, now), run every applicable rule (compiled programs are cached by
their source, so per policy version), combine deny > flag > allow. Pure Python + the CEL
binding: no database.

    .venv/bin/python bench/policy.py [--decisions 5000]

Targets (issue 3): at most 60 µs for one rule, at most 400 µs for 100 rules.
"""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gates.policies import PolicySnapshot, evaluate, validate_rules  # noqa: E402

TEMPLATES = [
    'has(input.amount) && input.amount > {n}',
    'step.type == "external" && has(input.vendor) && input.vendor == "v{n}"',
    'input.currency in ["EUR", "USD"] && input.amount > {n}',
    'actor.kind == "client" && run.workflow.startsWith("pay") && step.index > {n}',
    'size(input.lines) > {n} || tenant.id == "t{n}"',
]


def context() -> dict:
    payload = {"amount": 1250, "currency": "EUR", "vendor": "acme", "lines": [1, 2, 3],
               **{f"field_{i}": f"value {i}" for i in range(15)}}
    return {
        "run": {"id": "0b9a6a52-0000-4000-8000-000000000000", "workflow": "payments",
                "version": 3, "input": payload, "created_by": "client:billing",
                "metadata": {"source": "erp"}},
        "step": {"id": "pay", "type": "external", "index": 2, "config": {}, "attempt": 1},
        "input": payload,
        "actor": {"id": "billing", "kind": "client"},
        "tenant": {"id": "tenant_omega"},
        "now": datetime.now(UTC),
    }


def policies(rules: int) -> list[PolicySnapshot]:
    specs = [{"id": f"r{i}", "effect": ("flag" if i % 3 else "deny"),
              "when": TEMPLATES[i % len(TEMPLATES)].format(n=100000 + i)}
             for i in range(rules)]
    return [PolicySnapshot(policy_id=1, name="bench", version=1, tier=1, applies_to={},
                           rules=tuple(validate_rules(specs)))]


def measure(rules: int, decisions: int) -> tuple[float, float, str]:
    snapshot, ctx = policies(rules), context()
    for _ in range(200):
        evaluate(snapshot, ctx)
    times = []
    for _ in range(decisions):
        started = time.perf_counter()
        result = evaluate(snapshot, ctx)
        times.append(time.perf_counter() - started)
    return (statistics.median(times) * 1e6, statistics.quantiles(times, n=100)[98] * 1e6,
            result.decision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=5000)
    args = parser.parse_args()
    targets = {1: 60, 10: None, 100: 400}
    print(f"{'rules':>5}  {'median':>10}  {'p99':>10}  target")
    for rules, target in targets.items():
        median, p99, decision = measure(rules, args.decisions)
        verdict = ("" if target is None
                   else f"≤ {target} µs: {'ok' if median <= target else 'MISSED'}")
        print(f"{rules:>5}  {median:>8.1f}µs  {p99:>8.1f}µs  {verdict}  ({decision})")


if __name__ == "__main__":
    main()
