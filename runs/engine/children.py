"""Sub-workflows (DESIGN §11): a `type: workflow` step and its child run.

- When the step starts (after its policy decision allowed it, or its gate was approved),
  a child run of the named workflow (at `version`, or its newest) is created in the same
  tenant and the same transaction, with the step's resolved input, as `pending` with
  `parent_run` and `parent_step_id`; its `FC-RUN-001` names the parent. It is started by
  its own advance task enqueued on commit (the sweeper starts a pending run whose task
  was lost). The parent's `FC-STEP-001` names the child (`child_run_id`,
  `child_workflow`, `child_version`), so the parent's chain binds it.
- The child's governance is its own: its policies, gates, receipts and seal. It inherits
  the parent's creator (`created_by`, `created_by_key`), so four-eyes holds across runs.
- When the child ends, its commit enqueues the parent's advance (`advance.run_transition`);
  the parent's advance, under the parent's lock, settles every running workflow step
  whose child ended (`children_ended`): completed → the step succeeds with
  `{"run_id", "workflow_hash", "output"}`; failed or cancelled → the step fails
  (`child_run_failed`, `child_run_cancelled`) and retries or fails the run like any
  step. A lost wake-up is re-driven by the sweeper (`sweeper.children_ended_lost`).
- Ending the parent (cancel, fail) cancels its live children under their own locks,
  taken inside the parent's: lock order is always parent before child, and a child never
  locks its parent (it only enqueues the parent's advance), so the two cannot deadlock.
- Depth: a child deeper than `FCORE_SUBWORKFLOW_MAX_DEPTH` below its root run is refused
  (`subworkflow_too_deep`), as is a workflow the tenant does not have
  (`unknown_workflow`); neither is retried. Bundles refuse unknown child workflows and
  cycles of sub-workflows when they are loaded (`runs.subworkflows`).

Callers hold the parent's run lock.
"""

import uuid

from django.conf import settings

from audit.codes import Code
from audit.hashing import json_hash
from audit.services import audit_append
from fcore.errors import BadRequest

from ..handlers import StepError
from ..models import RUN_TERMINAL, Run, RunStatus, StepRun, StepStatus
from .dispatch import enqueue_advance
from .lock import run_definition, run_held_new, run_insert

WORKFLOW_STEP = "workflow"


class ChildRefused(Exception):
    """A child run that cannot be started; the step fails before it starts, not retried."""

    def __init__(self, code: str, detail: str):
        self.code = code
        super().__init__(detail)


def run_depth(run: Run) -> int:
    """How many ancestors a run has (a run started by people or machines: 0)."""
    depth, parent_id = 0, run.parent_run_id
    while parent_id is not None and depth <= settings.FCORE_SUBWORKFLOW_MAX_DEPTH:
        depth += 1
        parent_id = Run.objects.filter(pk=parent_id).values_list(
            "parent_run_id", flat=True).first()
    return depth


def child_plan(run: Run, step: StepRun) -> tuple:
    """(definition, policies) of the child run a workflow step starts. Raises ChildRefused
    for a workflow the tenant does not have, or a child deeper than allowed."""
    limit = settings.FCORE_SUBWORKFLOW_MAX_DEPTH
    if run_depth(run) + 1 > limit:
        raise ChildRefused(StepError.CHILD_TOO_DEEP.value,
                           f"a child run of {step.step_id} would be deeper than "
                           f"FCORE_SUBWORKFLOW_MAX_DEPTH ({limit})")
    workflow, version = step.config.get("workflow"), step.config.get("version")
    try:
        return run_definition(run.tenant, workflow, version)
    except BadRequest as exc:
        raise ChildRefused(StepError.CHILD_UNKNOWN_WORKFLOW.value,
                           f"{step.step_id}: {exc.detail}") from None


def child_event_data(definition, child_id: uuid.UUID) -> dict:
    """What the parent's `FC-STEP-001` records of the child it starts."""
    return {"child_run_id": str(child_id), "child_workflow": definition.name,
            "child_version": definition.version}


def child_insert(run: Run, step: StepRun, plan: tuple, child_id: uuid.UUID) -> None:
    """Create the pending child run of a started workflow step; it starts on commit."""
    definition, policies = plan
    child, stream, steps = run_insert(
        tenant=run.tenant, definition=definition, input=step.input, metadata={},
        actor=run.created_by, actor_key=run.created_by_key, idempotency_key=None,
        request_hash=json_hash({"parent": str(run.run_id), "step_id": step.step_id,
                                "attempt": step.attempt}),
        run_id=child_id, parent=(run.run_id, step.step_id))
    with run_held_new(child, steps, stream, policies):
        audit_append(
            tenant_id=run.tenant_id, stream=child.stream_name, code=Code.RUN_CREATED,
            actor=run.created_by,
            data={"run_id": str(child.run_id), "workflow": definition.name,
                  "version": definition.version, "input_hash": json_hash(step.input),
                  "idempotency_key": None, "key": run.created_by_key or None,
                  "steps": [s["id"] for s in definition.steps],
                  "parent": {"run_id": str(run.run_id), "step_id": step.step_id,
                             "attempt": step.attempt}})
    enqueue_advance(child.run_id)


def _running_workflow_steps(steps: dict[str, StepRun]) -> dict[str, StepRun]:
    return {sid: s for sid, s in steps.items()
            if s.step_type == WORKFLOW_STEP and s.status == StepStatus.RUNNING}


def children_ended(run: Run, steps: dict[str, StepRun]) -> list[tuple[StepRun, Run]]:
    """The running workflow steps whose child run (of their current attempt) has ended,
    with that child. No query when no workflow step is running."""
    running = _running_workflow_steps(steps)
    if not running:
        return []
    ended = []
    for child in Run.objects.filter(parent_run_id=run.run_id, status__in=RUN_TERMINAL,
                                    parent_step_id__in=list(running)):
        step = running[child.parent_step_id]
        # the child of the current attempt is created in the transaction that starts it;
        # a retried step's earlier children were created (and ended) before
        if step.started_at is None or child.created_at >= step.started_at:
            ended.append((step, child))
    return ended


def child_result(child: Run) -> tuple[bool, dict | None, dict | None]:
    """(succeeded, output, error) of a workflow step whose child ended."""
    if child.status == RunStatus.COMPLETED:
        return True, {"run_id": str(child.run_id), "workflow_hash": child.workflow_hash,
                      "output": child.output}, None
    code = (StepError.CHILD_CANCELLED if child.status == RunStatus.CANCELLED
            else StepError.CHILD_FAILED)
    return False, None, {"code": code.value, "run_id": str(child.run_id),
                         "workflow_hash": child.workflow_hash,
                         "detail": f"child run {child.run_id} {child.status}: "
                                   f"{child.status_reason}"[:1000]}


def children_live(run: Run, steps: dict[str, StepRun]) -> list[uuid.UUID]:
    """The ids of the run's children that have not ended, started by its running steps."""
    running = _running_workflow_steps(steps)
    if not running:
        return []
    return list(Run.objects.filter(parent_run_id=run.run_id, parent_step_id__in=list(running))
                .exclude(status__in=RUN_TERMINAL).order_by("created_at")
                .values_list("run_id", flat=True))
