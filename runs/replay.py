"""Replaying recorded decisions against their pinned policy versions (determinism check)."""

from dataclasses import dataclass, field

from django.conf import settings

from gates.models import PolicyDecision
from gates.policies import PolicyVersions, evaluate
from gates.policies import decision_context as stored_context

from .models import Run


@dataclass
class Replay:
    """The outcome of re-evaluating one run's recorded decisions."""

    run_id: str
    checked: int = 0
    differences: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _comparable(rules: list[dict]) -> list[tuple]:
    return [(r.get("policy_id"), r.get("rule"), r.get("effect"), r.get("reason"))
            for r in rules]


def replay_decisions(run: Run) -> Replay:
    """Re-evaluate every decision recorded for `run` with its recorded context and the
    policy versions it pinned; list every difference in decision, reason or rules fired."""
    versions, replay = PolicyVersions(), Replay(run_id=str(run.run_id))
    decisions = (PolicyDecision.objects.filter(step_run__run=run)
                 .select_related("step_run").order_by("evaluated_at", "id"))
    for recorded in decisions:
        where = {"step_id": recorded.step_run.step_id, "attempt": recorded.attempt,
                 "decision_id": recorded.id}
        replay.checked += 1
        snapshots = [versions.get(p["policy_id"], p["version"]) for p in recorded.policies]
        missing = [p for p, s in zip(recorded.policies, snapshots, strict=True) if s is None]
        if missing:
            replay.differences.append({**where, "field": "policy_versions",
                                       "recorded": recorded.policies, "replayed": None,
                                       "problem": f"pinned version(s) not found: {missing}"})
            continue
        again = evaluate(snapshots, stored_context(recorded.context),
                         time_limit_s=settings.FCORE_POLICY_TIME_LIMIT_MS / 1000)
        for name, before, after in (
                ("decision", recorded.decision, again.decision),
                ("reason", recorded.reason, again.reason),
                ("rules_triggered", _comparable(recorded.rules_triggered),
                 _comparable(again.rules_triggered))):
            if before != after:
                replay.differences.append({**where, "field": name, "recorded": before,
                                           "replayed": after})
    return replay
