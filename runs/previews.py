"""Decision previews: what would the policies decide for a step, without creating anything."""

from django.utils import timezone

from fcore.errors import BadRequest
from gates.policies import policies_applicable
from gates.policy import Decision, evaluate

from .decisions import decision_context
from .models import Run, StepRun, WorkflowDefinition


def decision_preview(*, tenant, workflow: str, step_id: str, input: dict, actor: str,
                     version: int | None = None, metadata: dict | None = None
                     ) -> tuple[Decision, dict]:
    """Evaluate the tenant's current policies for one step of a definition, exactly as the
    engine would for a new run (unsaved run and step objects). Returns (decision, context)."""
    definitions = WorkflowDefinition.objects.for_tenant(tenant).filter(name=workflow)
    if version is not None:
        definitions = definitions.filter(version=version)
    definition = definitions.order_by("-version").first()
    if definition is None:
        raise BadRequest(f"Unknown workflow {workflow!r}.", code="unknown_workflow",
                         errors={"workflow": ["unknown workflow"]})
    steps = {s["id"]: (i, s) for i, s in enumerate(definition.steps)}
    if step_id not in steps:
        raise BadRequest(f"Workflow {workflow!r} has no step {step_id!r}.", code="invalid",
                         errors={"step_id": ["unknown step"]})
    index, spec = steps[step_id]
    run = Run(tenant=tenant, definition=definition, input=input, metadata=metadata or {},
              created_by=actor)
    step = StepRun(run=run, step_id=step_id, step_type=spec["type"], index=index,
                   config={k: v for k, v in spec.items() if k not in ("id", "type", "after")})
    now = timezone.now()
    context = decision_context(run, step, now)
    decision = evaluate(policies_applicable(tenant=tenant, workflow=definition.name,
                                            step_type=spec["type"]), context)
    return decision, {**context, "now": now.isoformat()}
