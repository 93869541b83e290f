"""Workflow definitions: validating a step graph and publishing immutable versions."""

from graphlib import CycleError, TopologicalSorter

from django.db import transaction

from audit.hashing import jcs_problem, json_hash
from audit.services import admin_stream_name, audit_append
from gates.gate_settings import GateSettingsError, gate_settings_clean

from .models import WorkflowDefinition

STEP_TYPES = ("noop", "external", "approval")
INTERNAL_TYPES = ("noop",)
STEP_KEYS = {"id", "type", "after", "gate", "input", "config", "timeout_s", "retry", "name"}


class DefinitionError(ValueError):
    """A workflow definition that cannot be published, with the step at fault."""


def steps_validate(steps) -> list[dict]:
    """Normalise a step list: ids unique, known types, `after` (default: the previous step)
    naming known steps, no cycle. Raises DefinitionError with a clear message."""
    if not isinstance(steps, list) or not steps:
        raise DefinitionError("steps must be a non-empty list")
    problem = jcs_problem(steps)
    if problem:
        raise DefinitionError(f"steps cannot be stored: {problem}")
    clean, ids = [], []
    for position, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            raise DefinitionError(f"step #{position} must be an object")
        step_id = step.get("id")
        if not isinstance(step_id, str) or not step_id.strip():
            raise DefinitionError(f"step #{position} has no id")
        where = f"step '{step_id}'"
        if step_id in ids:
            raise DefinitionError(f"{where}: duplicate id")
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise DefinitionError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        step_type = step.get("type")
        if step_type not in STEP_TYPES:
            raise DefinitionError(
                f"{where}: type must be one of {', '.join(STEP_TYPES)}, not {step_type!r}")
        after = step.get("after", [ids[-1]] if ids else [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise DefinitionError(f"{where}: after must be a list of step ids")
        item = {"id": step_id, "type": step_type, "after": after}
        if "input" in step:
            if not isinstance(step["input"], dict):
                raise DefinitionError(f"{where}: input must be an object")
            item["input"] = step["input"]
        if "config" in step:
            item["config"] = step["config"]
        if step_type == "approval" or "gate" in step:
            if step_type != "approval":
                raise DefinitionError(f"{where}: only approval steps take a gate block")
            try:
                item["gate"] = gate_settings_clean(step.get("gate"))
            except GateSettingsError as exc:
                raise DefinitionError(f"{where}: gate: {exc}") from None
        ids.append(step_id)
        clean.append(item)
    known = set(ids)
    graph = {}
    for item in clean:
        missing = [a for a in item["after"] if a not in known]
        if missing:
            raise DefinitionError(f"step '{item['id']}': after names unknown step(s) "
                                  f"{', '.join(missing)}")
        graph[item["id"]] = set(item["after"])
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise DefinitionError(f"the steps form a cycle: {' -> '.join(exc.args[1])}") from None
    return clean


def definition_publish(*, tenant, name: str, steps, actor: str,
                       description: str = "") -> tuple[WorkflowDefinition, bool]:
    """Publish `steps` as the next version of `name`, unless identical to the latest.
    Returns (definition, created); a new version records `FC-ADM-002`."""
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError("a workflow needs a name")
    clean = steps_validate(steps)
    spec_hash = json_hash({"steps": clean})
    with transaction.atomic():
        latest = (WorkflowDefinition.objects.select_for_update()
                  .filter(tenant=tenant, name=name).order_by("-version").first())
        if latest and latest.spec_hash == spec_hash:
            return latest, False
        definition = WorkflowDefinition.objects.create(
            tenant=tenant, name=name, version=(latest.version if latest else 0) + 1,
            description=description, steps=clean, spec_hash=spec_hash, created_by=actor)
        audit_append(
            tenant_id=tenant.id, stream=admin_stream_name(tenant.slug), code="FC-ADM-002",
            actor=actor,
            data={"workflow": name, "version": definition.version, "spec_hash": spec_hash,
                  "steps": [s["id"] for s in clean]},
        )
    return definition, True
