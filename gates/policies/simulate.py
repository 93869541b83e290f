"""Simulation: how would recorded decisions change under draft policies?

Every decision stores the context it was evaluated on and the versions of the policies
that applied. A simulation re-evaluates the last N decisions of a tenant with the drafts
standing in for (or added to) the policies of the same name, every other policy at the
version the decision used, and counts the decisions that would change.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from gates.models import Policy, PolicyDecision, PolicyVersion

from .evaluation import (
    PolicySnapshot,
    evaluate,
    validate_applies_to,
    validate_rules,
    validate_tier,
)

DEFAULT_LIMIT = 1000
EXAMPLES_PER_CHANGE = 5


@dataclass
class SimulationReport:
    evaluated: int = 0
    changed: int = 0
    transitions: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"evaluated": self.evaluated, "changed": self.changed,
                "unchanged": self.evaluated - self.changed,
                "transitions": dict(sorted(self.transitions.items())),
                "examples": self.examples}


def draft_snapshot(draft: dict, *, policy_id: int | None = None) -> PolicySnapshot | None:
    """A validated draft as a snapshot (version 0: not saved); None when disabled."""
    rules = validate_rules(draft.get("rules") or [])
    applies_to = validate_applies_to(draft.get("applies_to"))
    tier = validate_tier(draft.get("tier", 1))
    if not draft.get("enabled", True):
        return None
    return PolicySnapshot(policy_id=policy_id or 0, name=draft["name"], version=0,
                          tier=tier, applies_to=applies_to, rules=tuple(rules))


def decision_context(stored: dict) -> dict:
    """A recorded context with `now` back as a timestamp."""
    context = dict(stored)
    if isinstance(context.get("now"), str):
        context["now"] = datetime.fromisoformat(context["now"])
    return context


class PolicyVersions:
    """PolicyVersion snapshots by (policy_id, version), fetched once each."""

    def __init__(self):
        self.cache: dict[tuple[int, int], PolicySnapshot | None] = {}

    def get(self, policy_id: int, version: int) -> PolicySnapshot | None:
        key = (policy_id, version)
        if key not in self.cache:
            row = (PolicyVersion.objects.select_related("policy")
                   .filter(policy_id=policy_id, version=version).first())
            self.cache[key] = row and PolicySnapshot(
                policy_id=policy_id, name=row.policy.name, version=version, tier=row.tier,
                applies_to=row.applies_to, rules=tuple(row.rules))
        return self.cache[key]


def policy_simulate(*, tenant, drafts: list[dict], limit: int = DEFAULT_LIMIT,
                    progress=None) -> SimulationReport:
    """Re-evaluate the tenant's last `limit` decisions with `drafts`; nothing is written.
    `progress` (`fcore.progress.Progress`) hears how many decisions, then each one."""
    names = {d["name"] for d in drafts}
    ids = dict(Policy.objects.filter(tenant=tenant, name__in=names).values_list("name", "id"))
    snapshots = {d["name"]: draft_snapshot(d, policy_id=ids.get(d["name"])) for d in drafts}
    versions, report = PolicyVersions(), SimulationReport()
    decisions = (PolicyDecision.objects.filter(tenant=tenant).select_related("step_run__run")
                 .order_by("-evaluated_at", "-id")[:limit])
    if progress is not None:
        progress.start(decisions.count())
    for decision in decisions:
        if progress is not None:
            progress.advance()
        context = decision_context(decision.context)
        if not context:
            continue
        workflow, step_type = context["run"]["workflow"], context["step"]["type"]
        policies = [versions.get(p["policy_id"], p["version"]) for p in decision.policies
                    if p["name"] not in names]
        policies = [p for p in policies if p is not None]
        policies += [s for s in snapshots.values() if s and s.applies(workflow, step_type)]
        policies.sort(key=lambda p: (-p.tier, p.name))
        new = evaluate(policies, context)
        report.evaluated += 1
        if new.decision == decision.decision:
            continue
        change = f"{decision.decision}→{new.decision}"
        report.changed += 1
        report.transitions[change] += 1
        if report.transitions[change] <= EXAMPLES_PER_CHANGE:
            report.examples.append({
                "change": change, "run_id": str(decision.step_run.run_id),
                "step_id": decision.step_run.step_id,
                "evaluated_at": decision.evaluated_at.isoformat(),
                "was": {"decision": decision.decision, "reason": decision.reason},
                "would_be": {"decision": new.decision, "reason": new.reason,
                             "rules_triggered": new.rules_triggered},
            })
    return report
