"""Every step is a decision: the context a rule sees, recording a decision, and replaying
recorded decisions against their pinned policy versions (determinism check)."""

from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from audit.services import audit_append
from fcore.actors import ENGINE, Actor
from fcore.rows import row_new, rows_insert
from gates.models import PolicyDecision
from gates.policies import Decision, PolicySnapshot, PolicyVersions, evaluate
from gates.policies import decision_context as stored_context

from .models import Run, StepRun
from .steps import step_input


def decision_context(run: Run, step: StepRun, now) -> dict:
    """What a rule sees (DESIGN §6). `now` is a datetime (a CEL timestamp)."""
    definition = run.definition
    return {
        "run": {"id": str(run.run_id), "workflow": definition.name,
                "version": definition.version, "input": run.input,
                "created_by": run.created_by, "metadata": run.metadata},
        "step": {"id": step.step_id, "type": step.step_type, "index": step.index,
                 "config": step.config, "attempt": step.attempt},
        "input": step_input(run, step),
        "actor": Actor.parse(run.created_by).as_context(),
        "tenant": {"id": run.tenant.slug},
        "now": now,
    }


def step_decide(run: Run, step: StepRun, enabled: list[PolicySnapshot]) -> Decision:
    """Evaluate the enabled policies that apply to a step and record the decision
    (`PolicyDecision`, `FC-POL-001`). The step's `decision` fields are set, not saved: the
    transition that follows saves the step once."""
    now = timezone.now()
    context = decision_context(run, step, now)
    applicable = [p for p in enabled if p.applies(run.definition.name, step.step_type)]
    decision = evaluate(applicable, context,
                        time_limit_s=settings.FCORE_POLICY_TIME_LIMIT_MS / 1000)
    rows_insert(PolicyDecision, [row_new(
        PolicyDecision, tenant_id=run.tenant_id, step_run_id=step.pk, attempt=step.attempt,
        decision=decision.decision, reason=decision.reason, policy_id=decision.policy_id,
        policy_version=decision.policy_version, tier=decision.tier,
        rules_triggered=decision.rules_triggered, policies=decision.policies,
        context={**context, "now": now.isoformat()}, evaluated_at=now,
        evaluation_us=decision.evaluation_us)])
    step.decision = decision.decision
    step.policy_versions = decision.policy_versions
    audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code="FC-POL-001", actor=ENGINE,
        data={"step_id": step.step_id, "attempt": step.attempt, "decision": decision.decision,
              "reason": decision.reason, "policy_id": decision.policy_id,
              "policy_version": decision.policy_version, "tier": decision.tier,
              "rules_triggered": decision.rules_triggered,
              "policy_versions": decision.policy_versions},
    )
    return decision


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
