"""Conditions and maps (DESIGN §11): what happens to a ready step that has a `when` or a
`map` before it is decided, and to the instances of a map step.

- `when` false → the step is skipped (`FC-STEP-005`, reason `condition false`), and the
  steps after it go on as after any skipped step.
- `map` → the step starts (`FC-STEP-001` with the number of instances; its input is
  `{"items": [...]}`) and gets one instance per item, step rows `<id>[0]`, `<id>[1]`, …
  inserted under the lock (they share the step's index and follow it). Each instance is
  then an ordinary step: its own decision, gate, retries, receipt; at most
  `max_concurrency` of them are running or waiting at a gate at once. When the last one
  succeeds the step succeeds with `{"items": [outputs in item order]}`; an instance that
  fails for good fails the step (`map_instance_failed`), and the run fails closed.
- An expression that fails, or a list longer than `FCORE_MAP_MAX_ITEMS`, fails the step
  before it starts (`expression_error`, `map_too_many_items`; never retried).

Callers hold the run lock. A step without a plan (`steps.step_plan`) never comes here.
"""

from django.conf import settings
from django.utils import timezone

from audit.codes import Code
from audit.hashing import json_hash
from audit.services import audit_append
from fcore.actors import ENGINE

from ..expressions import (
    Evaluation,
    ExpressionFailed,
    StepPlan,
    definition_plan,
    map_items,
    when_result,
)
from ..handlers import StepError
from ..models import Run, StepRun, StepStatus
from .lock import step_changed, steps_added
from .steps import expression_evaluation, expression_variables, step_close, step_finish

_PARENT_ONLY = ("when", "map", "max_concurrency")


class MapTooLarge(ExpressionFailed):
    """A map over more items than `FCORE_MAP_MAX_ITEMS`."""

    code = StepError.MAP_TOO_MANY_ITEMS.value


def step_prepare(run: Run, steps: dict[str, StepRun], step: StepRun, plan: StepPlan) -> bool:
    """Evaluate a ready step's `when` and `map`: skip it, or expand it into its instances.
    True when the step goes on to its decision. Raises ExpressionFailed."""
    if step.map_parent:  # an instance: its parent's when and map were evaluated
        return True
    evaluation = None
    if plan.when is not None:
        evaluation = expression_evaluation(run, steps, step, plan)
        if not when_result(evaluation, plan.when):
            step_close(run, step, "skip", actor=ENGINE, reason="condition false")
            return False
    if plan.map is None:
        return True
    items = map_items(evaluation or expression_evaluation(run, steps, step, plan), plan.map)
    if len(items) > settings.FCORE_MAP_MAX_ITEMS:
        raise MapTooLarge(f"map: {len(items)} items, more than FCORE_MAP_MAX_ITEMS "
                          f"({settings.FCORE_MAP_MAX_ITEMS})")
    _map_expand(run, steps, step, items)
    return False


def _map_expand(run: Run, steps: dict[str, StepRun], parent: StepRun, items: list) -> None:
    parent.start()
    parent.started_at = timezone.now()
    parent.input = {"items": items}
    parent.input_hash = json_hash(parent.input)
    step_changed(run, parent)
    run.current_step, run.step_index = parent.step_id, parent.index
    config = {k: v for k, v in parent.config.items() if k not in _PARENT_ONLY}
    added = StepRun.objects.bulk_create([
        StepRun(run_id=run.run_id, step_id=f"{parent.step_id}[{n}]",
                step_type=parent.step_type, index=parent.index, after=parent.after,
                config={**config, "map_item": item}, map_parent=parent.step_id, map_index=n)
        for n, item in enumerate(items)])
    steps_added(run, parent, added)
    audit_append(tenant_id=run.tenant_id, stream=run.stream_name, code=Code.STEP_STARTED,
                 actor=ENGINE, data={"step_id": parent.step_id, "step_type": parent.step_type,
                                     "attempt": parent.attempt,
                                     "input_hash": parent.input_hash,
                                     "instances": [s.step_id for s in added]})
    if not added:
        map_settle(run, steps, parent)


def map_instances(steps: dict[str, StepRun], parent_id: str) -> list[StepRun]:
    """A map step's instances, in item order."""
    return sorted((s for s in steps.values() if s.map_parent == parent_id),
                  key=lambda s: s.map_index)


def map_settle(run: Run, steps: dict[str, StepRun], parent: StepRun) -> None:
    """The map step succeeds once every instance has succeeded."""
    instances = map_instances(steps, parent.step_id)
    if parent.status == StepStatus.RUNNING and all(
            s.status == StepStatus.SUCCEEDED for s in instances):
        step_finish(run, steps, parent, succeeded=True, actor=ENGINE,
                    output={"items": [s.output for s in instances]})


def map_fail(run: Run, steps: dict[str, StepRun], instance: StepRun) -> None:
    """An instance failed for good: its map step fails (`map_instance_failed`)."""
    parent = steps[instance.map_parent]
    if parent.status == StepStatus.RUNNING:
        step_finish(run, steps, parent, succeeded=False, output=None, actor=ENGINE,
                    error={"code": StepError.MAP_INSTANCE_FAILED.value, "retryable": False,
                           "detail": f"instance {instance.step_id} failed"})


def ready_within_limit(ready: list[StepRun], steps: dict[str, StepRun]) -> list[StepRun]:
    """The ready steps, with each map's instances cut to what its `max_concurrency`
    leaves beside those already running or waiting at a gate."""
    budgets: dict[str, int | None] = {}
    kept = []
    for step in ready:
        parent_id = step.map_parent
        if parent_id:
            if parent_id not in budgets:
                limit = steps[parent_id].config.get("max_concurrency")
                busy = sum(1 for s in steps.values() if s.map_parent == parent_id
                           and s.status in (StepStatus.RUNNING, StepStatus.WAITING))
                budgets[parent_id] = None if limit is None else limit - busy
            if budgets[parent_id] is not None:
                if budgets[parent_id] <= 0:
                    continue
                budgets[parent_id] -= 1
        kept.append(step)
    return kept


def step_fail_unstarted(run: Run, steps: dict[str, StepRun], step: StepRun,
                        failure: Exception) -> None:
    """A step whose expression failed (or whose child run cannot start) fails before it
    starts (`FC-STEP-003` with the error and its `code`), never retried; the caller fails
    the run."""
    step.start()
    step.started_at = timezone.now()
    step.input_hash = json_hash(step.input)
    step_finish(run, steps, step, succeeded=False, output=None, actor=ENGINE,
                error={"code": failure.code, "detail": str(failure)[:1000],
                       "retryable": False})


def run_output(run: Run, steps: dict[str, StepRun]):
    """The definition's `output` resolved over the run's steps, or None when it has none.
    Raises ExpressionFailed."""
    template = definition_plan(run.definition).output
    if template is None:
        return None
    variables = expression_variables(run, steps, names=template.variables,
                                     reads=template.steps)
    return Evaluation(variables).fill(template, "output")
