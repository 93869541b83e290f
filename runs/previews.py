"""Decision previews: what would the policies decide for a step, without creating anything."""

from django.utils import timezone

from fcore.errors import BadRequest, ErrorCode
from gates.policies import Decision, evaluate, policies_applicable

from .definitions import definition_current, step_config
from .engine import decision_context
from .expressions import ExpressionFailed
from .models import Run, StepRun


def decision_preview(*, tenant, workflow: str, step_id: str, input: dict, actor: str,
                     version: int | None = None, metadata: dict | None = None
                     ) -> tuple[Decision, dict]:
    """Evaluate the tenant's current policies for one step of a definition, exactly as the
    engine would for a new run (unsaved run and step objects). Returns (decision, context)."""
    definition = definition_current(tenant, workflow, version)
    steps = {s["id"]: (i, s) for i, s in enumerate(definition.steps)}
    if step_id not in steps:
        raise BadRequest(f"Workflow {workflow!r} has no step {step_id!r}.", code=ErrorCode.INVALID,
                         errors={"step_id": ["unknown step"]})
    index, spec = steps[step_id]
    run = Run(tenant=tenant, definition=definition, input=input, metadata=metadata or {},
              created_by=actor)
    step = StepRun(run=run, step_id=step_id, step_type=spec["type"], index=index,
                   config=step_config(spec))
    now = timezone.now()
    try:
        context = decision_context(run, step, now)
    except ExpressionFailed as exc:  # it reads a step output a preview does not have
        raise BadRequest(f"The step's input cannot be resolved: {exc}",
                         code=ErrorCode.EXPRESSION_ERROR) from None
    decision = evaluate(policies_applicable(tenant=tenant, workflow=definition.name,
                                            step_type=spec["type"]), context)
    return decision, {**context, "now": now.isoformat()}
