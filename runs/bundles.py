"""Bundles: workflow definitions and policies as code (DESIGN §10).

A bundle is checked whole before anything is written; loading the same bundle twice
changes nothing; a changed definition or policy becomes a new version.
"""

import re

import yaml
from django.db import transaction

from fcore.models import Tenant
from gates.policies import (
    RuleError,
    policy_save,
    validate_applies_to,
    validate_rules,
    validate_tier,
)

from .definitions import DefinitionError, definition_publish, output_validate, steps_validate
from .models import Schedule, WorkflowDefinition
from .schedules import ScheduleError, schedule_clean, schedule_save
from .subworkflows import SubworkflowError, bundle_subworkflows_check

BUNDLE_KEYS = {"tenant", "name", "workflows", "policies", "schedules"}
WORKFLOW_KEYS = {"name", "description", "steps", "output"}


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message names the place at fault. `key` is
    where in the bundle (e.g. ("workflows", 0, "steps", 1, "when")) when known, and
    `line`, `column` where that key is in the bundle's text when it was given."""

    def __init__(self, message: str, *, key: tuple = (), line: int | None = None,
                 column: int | None = None):
        self.key, self.line, self.column = key, line, column
        super().__init__(message)


def bundle_position(text: str, key: tuple) -> tuple[int, int] | None:
    """(line, column), from 1, of the deepest part of `key` found in a bundle's YAML or
    JSON text (a mapping's key, or a list's entry); None when the text does not parse."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    mark = None
    for part in key:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not found:
                break
            mark, node = found[0][0].start_mark, found[0][1]
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and part < len(node.value)):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def _located(exc: BundleError, text: str | None) -> BundleError:
    position = bundle_position(text, exc.key) if text and exc.key else None
    if position is None:
        return exc
    line, column = position
    return BundleError(f"{exc} (at line {line}, column {column})", key=exc.key, line=line,
                       column=column)


SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")  # what the tenant's SlugField stores
NAME_MAX = 200


def _text(value, *, max_length: int | None = None) -> bool:
    return isinstance(value, str) and bool(value.strip()) and (
        max_length is None or len(value) <= max_length)


def _entries(data: dict, key: str, source: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BundleError(f"{source}: '{key}' must be a list")
    return value


def bundle_check(data, *, source: str = "bundle", text: str | None = None) -> None:
    """Raise BundleError at the first fault, naming file, workflow/policy, step, key, rule,
    and (given the bundle's `text`) the line and column of the key at fault."""
    try:
        _bundle_check(data, source)
    except BundleError as exc:
        raise _located(exc, text) from None


def _bundle_check(data, source: str) -> None:
    if not isinstance(data, dict):
        raise BundleError(f"{source}: a bundle is a mapping with tenant, workflows, policies")
    unknown = set(data) - BUNDLE_KEYS
    if unknown:
        raise BundleError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(data.get("tenant"), str) or not SLUG.fullmatch(data["tenant"]):
        raise BundleError(f"{source}: 'tenant' (a slug of up to 64 letters, digits, '-' "
                          "or '_') is required")
    if data.get("name") is not None and not _text(data["name"], max_length=NAME_MAX):
        raise BundleError(f"{source}: 'name' must be a text of up to {NAME_MAX} characters")
    for i, wf in enumerate(_entries(data, "workflows", source), start=1):
        name = wf.get("name") if isinstance(wf, dict) else None
        where = f"{source}: workflow {name if isinstance(name, str) and name else '#' + str(i)}"
        if not isinstance(wf, dict):
            raise BundleError(f"{where}: a workflow is a mapping with name and steps")
        if not _text(name, max_length=NAME_MAX):
            raise BundleError(f"{where}: a workflow needs a name of up to {NAME_MAX} characters")
        unknown = set(wf) - WORKFLOW_KEYS
        if unknown:
            raise BundleError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                              key=("workflows", i - 1))
        if not isinstance(wf.get("description", ""), str):
            raise BundleError(f"{where}: description must be a text")
        try:
            clean = steps_validate(wf.get("steps"))
            if wf.get("output") is not None:
                output_validate(wf["output"], clean)
        except DefinitionError as exc:
            raise BundleError(f"{where}: {exc}",
                              key=("workflows", i - 1, *(exc.key or ("steps",)))) from None
    try:  # the references between workflows, once each is valid on its own
        bundle_subworkflows_check(data["tenant"], _entries(data, "workflows", source))
    except SubworkflowError as exc:
        raise BundleError(f"{source}: {exc}", key=exc.key) from None
    for i, pol in enumerate(_entries(data, "policies", source), start=1):
        name = pol.get("name") if isinstance(pol, dict) else None
        where = f"{source}: policy {name if isinstance(name, str) and name else '#' + str(i)}"
        if not isinstance(pol, dict):
            raise BundleError(f"{where}: a policy is a mapping with name and rules")
        if not _text(name, max_length=NAME_MAX):
            raise BundleError(f"{where}: a policy needs a name of up to {NAME_MAX} characters")
        if not isinstance(pol.get("enabled", True), bool):
            raise BundleError(f"{where}: enabled must be true or false")
        if not isinstance(pol.get("description", ""), str):
            raise BundleError(f"{where}: description must be a text")
        try:
            validate_tier(pol.get("tier", 1))
            validate_rules(pol.get("rules") or [])
            validate_applies_to(pol.get("applies_to"))
        except RuleError as exc:
            raise BundleError(f"{where}: {exc}") from None
    _schedules_check(data, source)


def _schedules_check(data: dict, source: str) -> None:
    """Each schedule, against the bundle's workflows and the tenant's published ones."""
    entries = _entries(data, "schedules", source)
    if not entries:
        return
    workflows = {wf["name"] for wf in data.get("workflows") or []}
    wanted = {entry.get("workflow") for entry in entries if isinstance(entry, dict)}
    if wanted - workflows:
        workflows |= set(WorkflowDefinition.objects.filter(
            tenant__slug=data["tenant"], name__in=[w for w in wanted - workflows
                                                   if isinstance(w, str)])
            .values_list("name", flat=True))
    seen = set()
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{source}: schedule {name if isinstance(name, str) and name else '#' + str(i + 1)}"
        try:
            clean = schedule_clean(entry, workflows=frozenset(workflows))
        except ScheduleError as exc:
            raise BundleError(f"{where}: {exc}",
                              key=("schedules", i, *((exc.key,) if exc.key else ()))) from None
        if clean["name"] in seen:
            raise BundleError(f"{where}: a second schedule of that name",
                              key=("schedules", i, "name"))
        seen.add(clean["name"])


def bundle_load(data, *, actor: str, source: str = "bundle", text: str | None = None) -> dict:
    """Check then load a bundle in one transaction. Returns what changed. `text`, the
    bundle as read, lets an error name the line and column at fault."""
    bundle_check(data, source=source, text=text)
    summary = {"tenant": data["tenant"], "workflows": [], "policies": [], "schedules": []}
    with transaction.atomic():
        tenant, created = Tenant.objects.get_or_create(
            slug=data["tenant"], defaults={"name": data.get("name") or data["tenant"]})
        summary["tenant_created"] = created
        for wf in data.get("workflows") or []:
            definition, changed = definition_publish(
                tenant=tenant, name=wf["name"], steps=wf["steps"], actor=actor,
                description=wf.get("description", ""), output=wf.get("output"))
            summary["workflows"].append(
                {"name": definition.name, "version": definition.version, "changed": changed})
        for pol in data.get("policies") or []:
            try:
                policy, changed = policy_save(
                    tenant=tenant, name=pol["name"], rules=pol.get("rules") or [],
                    tier=pol.get("tier", 1), applies_to=pol.get("applies_to"),
                    enabled=pol.get("enabled", True), description=pol.get("description", ""),
                    actor=actor)
            except RuleError as exc:
                raise BundleError(f"{source}: policy {pol['name']}: {exc}") from None
            summary["policies"].append(
                {"name": policy.name, "version": policy.version, "changed": changed})
        workflows = frozenset(w["name"] for w in summary["workflows"]) | frozenset(
            WorkflowDefinition.objects.for_tenant(tenant).values_list("name", flat=True))
        for spec in data.get("schedules") or []:
            schedule, changed = schedule_save(
                tenant=tenant, spec=schedule_clean(spec, workflows=workflows), actor=actor)
            summary["schedules"].append({"name": schedule.name, "changed": changed})
    return summary


def bundle_export(tenant) -> dict:
    """The tenant's latest workflow versions, current policies and schedules as a bundle
    that `bundle_load` loads back to the same state (no new versions)."""
    from gates.models import Policy

    bundle = {"tenant": tenant.slug, "name": tenant.name}
    latest = {}
    for definition in WorkflowDefinition.objects.for_tenant(tenant).order_by("name", "version"):
        latest[definition.name] = definition
    bundle.update({
        "workflows": [{"name": d.name, "description": d.description, "steps": d.steps,
                       **({"output": d.output} if d.output is not None else {})}
                      for d in latest.values()],
        "policies": [{"name": p.name, "description": p.description, "tier": p.tier,
                      "applies_to": p.applies_to, "enabled": p.enabled, "rules": p.rules}
                     for p in Policy.objects.for_tenant(tenant).filter(version__gt=0)
                     .order_by("name")],
    })
    schedules = [{"name": sc.name, "workflow": sc.workflow, "cron": sc.cron,
                  "timezone": sc.timezone, "input": sc.input, "enabled": sc.enabled}
                 for sc in Schedule.objects.for_tenant(tenant).order_by("name")]
    if schedules:
        bundle["schedules"] = schedules
    return bundle
