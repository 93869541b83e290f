"""Policy services and selectors: saving versions, finding what applies to a step."""

from django.db import transaction

from audit.hashing import json_hash
from audit.services import admin_stream_name, audit_append
from fcore.rows import rows_fetch_together

from .models import Policy, PolicyVersion
from .policy import (
    PolicySnapshot,
    RuleError,
    validate_applies_to,
    validate_rules,
    validate_tier,
)


def rules_diff(old: list[dict], new: list[dict]) -> dict:
    """Rule ids added, removed and changed from `old` to `new`."""
    before = {r["id"]: r for r in old}
    after = {r["id"]: r for r in new}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(i for i in set(before) & set(after) if before[i] != after[i]),
    }


def policy_save(*, tenant, name: str, rules, actor: str, tier: int = 1, applies_to=None,
                enabled: bool = True, description: str = "") -> tuple[Policy, bool]:
    """Validate and save a policy; a real change creates a new immutable version and
    `FC-ADM-001` with the diff. Returns (policy, changed)."""
    validate_tier(tier)
    clean_rules = validate_rules(rules)
    clean_applies = validate_applies_to(applies_to)
    spec = {"tier": tier, "applies_to": clean_applies, "rules": clean_rules,
            "enabled": bool(enabled)}
    spec_hash = json_hash(spec)
    with transaction.atomic():
        policy, _ = Policy.objects.select_for_update().get_or_create(
            tenant=tenant, name=name, defaults={"rules": []})
        latest = policy.versions.order_by("-version").first()
        if latest and latest.spec_hash == spec_hash:
            if description and description != policy.description:
                policy.description = description
                policy.save(update_fields=["description", "updated_at"])
            return policy, False
        old = {"tier": latest.tier, "applies_to": latest.applies_to, "rules": latest.rules,
               "enabled": latest.enabled} if latest else {"rules": []}
        policy.version = (latest.version if latest else 0) + 1
        policy.tier, policy.applies_to, policy.rules = tier, clean_applies, clean_rules
        policy.enabled = bool(enabled)
        policy.description = description or policy.description
        policy.save()
        PolicyVersion.objects.create(
            policy=policy, version=policy.version, tier=tier, applies_to=clean_applies,
            rules=clean_rules, enabled=bool(enabled), spec_hash=spec_hash, created_by=actor)
        fields = sorted(k for k in ("tier", "applies_to", "enabled") if old.get(k) != spec[k])
        audit_append(
            tenant_id=tenant.id, stream=admin_stream_name(tenant.slug), code="FC-ADM-001",
            actor=actor,
            data={"policy": name, "policy_id": policy.id, "version": policy.version,
                  "previous_version": latest.version if latest else None,
                  "spec_hash": spec_hash, "fields_changed": fields,
                  "rules": rules_diff(old["rules"], clean_rules)},
        )
    return policy, True


def policies_enabled_query(tenant_id_sql: str, params: list) -> tuple:
    """The query of a tenant's enabled policy rows, current versions, in `Meta.ordering`,
    for `fcore.rows.rows_fetch_together`. `tenant_id_sql` is the tenant's id in SQL with
    its `params`: `%s` and the id, or a subquery (the run lock reads the policies with the
    run, before it knows the tenant)."""
    return (Policy, f"tenant_id = {tenant_id_sql} AND enabled = %s AND version > 0",
            [*params, True], "tier DESC, name", False)


def policies_enabled(tenant) -> list[PolicySnapshot]:
    """The tenant's enabled policies, current versions, as evaluation snapshots."""
    return policy_snapshots(rows_fetch_together(policies_enabled_query("%s", [tenant.id]))[0])


def policy_snapshots(policies: list[Policy]) -> list[PolicySnapshot]:
    """Evaluation snapshots of current policy rows."""
    return [PolicySnapshot(policy_id=p.id, name=p.name, version=p.version, tier=p.tier,
                           applies_to=p.applies_to, rules=tuple(p.rules)) for p in policies]


def policies_applicable(*, tenant, workflow: str, step_type: str) -> list[PolicySnapshot]:
    """Enabled policies of the tenant whose patterns match, as evaluation snapshots."""
    return [p for p in policies_enabled(tenant) if p.applies(workflow, step_type)]


def policy_restore(*, policy: Policy, version: int, actor: str) -> tuple[Policy, bool]:
    """Make an old version current again: it is saved as a new version (`FC-ADM-001`)."""
    old = policy.versions.filter(version=version).first()
    if old is None:
        raise RuleError(f"policy {policy.name} has no version {version}")
    return policy_save(tenant=policy.tenant, name=policy.name, rules=old.rules, tier=old.tier,
                       applies_to=old.applies_to, enabled=old.enabled, actor=actor)
