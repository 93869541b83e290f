"""Bundles: workflow definitions and policies as code (DESIGN §10).

A bundle is checked whole before anything is written; loading the same bundle twice
changes nothing; a changed definition or policy becomes a new version.
"""

from django.db import transaction

from fcore.models import Tenant
from gates.policies import policy_save
from gates.policy import RuleError, validate_applies_to, validate_rules

from .definitions import DefinitionError, definition_publish, steps_validate

BUNDLE_KEYS = {"tenant", "name", "workflows", "policies"}


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message names the place at fault."""


def bundle_check(data, *, source: str = "bundle") -> None:
    """Raise BundleError at the first fault, naming file, workflow/policy, rule, position."""
    if not isinstance(data, dict):
        raise BundleError(f"{source}: a bundle is a mapping with tenant, workflows, policies")
    unknown = set(data) - BUNDLE_KEYS
    if unknown:
        raise BundleError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    if not isinstance(data.get("tenant"), str) or not data["tenant"].strip():
        raise BundleError(f"{source}: 'tenant' (a slug) is required")
    for i, wf in enumerate(data.get("workflows") or [], start=1):
        name = wf.get("name") if isinstance(wf, dict) else None
        where = f"{source}: workflow {name or '#' + str(i)}"
        if not name:
            raise BundleError(f"{where}: a workflow needs a name")
        try:
            steps_validate(wf.get("steps"))
        except DefinitionError as exc:
            raise BundleError(f"{where}: {exc}") from None
    for i, pol in enumerate(data.get("policies") or [], start=1):
        name = pol.get("name") if isinstance(pol, dict) else None
        where = f"{source}: policy {name or '#' + str(i)}"
        if not name:
            raise BundleError(f"{where}: a policy needs a name")
        try:
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
