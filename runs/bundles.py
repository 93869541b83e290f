"""Bundles: workflow definitions and policies as code (DESIGN §10).

A bundle is checked whole before anything is written; loading the same bundle twice
changes nothing; a changed definition or policy becomes a new version.
"""

import re

from django.db import transaction

from fcore.models import Tenant
from gates.policies import (
    RuleError,
    policy_save,
    validate_applies_to,
    validate_rules,
    validate_tier,
)

from .definitions import DefinitionError, definition_publish, steps_validate

BUNDLE_KEYS = {"tenant", "name", "workflows", "policies"}


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message names the place at fault."""


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


def bundle_check(data, *, source: str = "bundle") -> None:
    """Raise BundleError at the first fault, naming file, workflow/policy, rule, position."""
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
        if not isinstance(wf.get("description", ""), str):
            raise BundleError(f"{where}: description must be a text")
        try:
            steps_validate(wf.get("steps"))
        except DefinitionError as exc:
            raise BundleError(f"{where}: {exc}") from None
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


def bundle_load(data, *, actor: str, source: str = "bundle") -> dict:
    """Check then load a bundle in one transaction. Returns what changed."""
    bundle_check(data, source=source)
    summary = {"tenant": data["tenant"], "workflows": [], "policies": []}
    with transaction.atomic():
        tenant, created = Tenant.objects.get_or_create(
            slug=data["tenant"], defaults={"name": data.get("name") or data["tenant"]})
        summary["tenant_created"] = created
        for wf in data.get("workflows") or []:
            definition, changed = definition_publish(
                tenant=tenant, name=wf["name"], steps=wf["steps"], actor=actor,
                description=wf.get("description", ""))
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
    return summary


def bundle_export(tenant) -> dict:
    """The tenant's latest workflow versions and current policies as a bundle that
    `bundle_load` loads back to the same state (no new versions)."""
    from gates.models import Policy

    from .models import WorkflowDefinition

    latest = {}
    for definition in WorkflowDefinition.objects.for_tenant(tenant).order_by("name", "version"):
        latest[definition.name] = definition
    return {
        "tenant": tenant.slug,
        "name": tenant.name,
        "workflows": [{"name": d.name, "description": d.description, "steps": d.steps}
                      for d in latest.values()],
        "policies": [{"name": p.name, "description": p.description, "tier": p.tier,
                      "applies_to": p.applies_to, "enabled": p.enabled, "rules": p.rules}
                     for p in Policy.objects.for_tenant(tenant).filter(version__gt=0)
                     .order_by("name")],
    }
