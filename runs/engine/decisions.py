"""Every step is a decision: the context a rule sees, and recording the decision."""

from django.conf import settings
from django.utils import timezone

from audit.codes import Code
from audit.services import audit_append
from fcore.actors import ENGINE, Actor
from fcore.metrics import DECISIONS, count_on_commit
from gates.policies import Decision, PolicySnapshot, evaluate

from ..models import Run, StepRun
from .lock import locked
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
        "input": step.input if step.input is not None else step_input(run, step),
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
    step.input = context["input"]  # resolved once: what is decided on is what runs
    applicable = [p for p in enabled if p.applies(run.definition.name, step.step_type)]
    decision = evaluate(applicable, context,
                        time_limit_s=settings.FCORE_POLICY_TIME_LIMIT_MS / 1000)
    locked(run).writes.decisions.append(dict(  # a gates.PolicyDecision row
        tenant_id=run.tenant_id, step_run_id=step.pk, attempt=step.attempt,
        decision=decision.decision, reason=decision.reason, policy_id=decision.policy_id,
        policy_version=decision.policy_version, tier=decision.tier,
        rules_triggered=decision.rules_triggered, policies=decision.policies,
        context={**context, "now": now.isoformat()}, evaluated_at=now,
        evaluation_us=decision.evaluation_us))
    count_on_commit(DECISIONS, decision.decision)
    step.decision = decision.decision
    step.policy_versions = decision.policy_versions
    audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.POLICY_DECISION, actor=ENGINE,
        data={"step_id": step.step_id, "attempt": step.attempt, "decision": decision.decision,
              "reason": decision.reason, "policy_id": decision.policy_id,
              "policy_version": decision.policy_version, "tier": decision.tier,
              "rules_triggered": decision.rules_triggered,
              "policy_versions": decision.policy_versions},
    )
    return decision
