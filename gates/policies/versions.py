"""Policy services and selectors: saving versions, finding what applies to a step."""

from django.db import connection, transaction

from audit.codes import Code
from audit.hashing import json_hash
from audit.services import admin_stream_name, audit_append
from gates.models import Policy, PolicyVersion

from .evaluation import (
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
            tenant_id=tenant.id, stream=admin_stream_name(tenant.slug), code=Code.POLICY_CHANGED,
            actor=actor,
            data={"policy": name, "policy_id": policy.id, "version": policy.version,
                  "previous_version": latest.version if latest else None,
                  "spec_hash": spec_hash, "fields_changed": fields,
                  "rules": rules_diff(old["rules"], clean_rules)},
        )
    return policy, True


def policies_stamp_sql(tenant_id_sql: str) -> str:
    """SQL of a value that changes whenever the enabled policies of a tenant may have:
    the count of its policy rows, the sum of their versions and their latest `updated_at`.
    Every change that evaluation sees goes through `policy_save`, which adds a row or raises
    one row's version by one, and rows are never deleted (`Policy.tenant` and the versions
    protect them; admin refuses it), so the sum alone moves with every change; the latest
    save time also tells apart the rows of a test rolled back and reusing ids."""
    table = Policy._meta.db_table
    return (f"(SELECT CAST(COUNT(*) AS TEXT) || ':' || CAST(COALESCE(SUM(version), 0) AS TEXT)"
            f" || ':' || COALESCE(CAST(MAX(updated_at) AS TEXT), '') FROM {table}"
            f" WHERE tenant_id = {tenant_id_sql})")


_enabled_at: dict[int, tuple[str, list[PolicySnapshot]]] = {}


def policies_enabled_at(tenant_id: int, stamp: str) -> list[PolicySnapshot]:
    """The tenant's enabled policies, current versions, as evaluation snapshots, given their
    `policies_stamp_sql` read by the caller: kept per process and read again only when the
    stamp moves. The rows are read after the stamp, so what is kept under a stamp is never
    older than it; if it is newer, the next stamp differs and it is read again."""
    kept = _enabled_at.get(tenant_id)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    snapshots = policies_enabled_of(tenant_id)
    if len(_enabled_at) > 10_000:
        _enabled_at.clear()
    _enabled_at[tenant_id] = (stamp, snapshots)
    return snapshots


def policies_kept_clear() -> None:
    """Forget the kept policies (tests: ids are reused after a rollback)."""
    _enabled_at.clear()


def policies_enabled(tenant) -> list[PolicySnapshot]:
    """The tenant's enabled policies, current versions, as evaluation snapshots."""
    return policies_enabled_of(tenant.id)


def policies_enabled_of(tenant_id: int) -> list[PolicySnapshot]:
    """`policies_enabled` by the tenant's id."""
    return policy_snapshots(Policy.objects.filter(tenant_id=tenant_id, enabled=True,
                                                  version__gt=0))


def policies_stamp(tenant_id: int) -> str:
    """The stamp of a tenant's policies (`policies_stamp_sql`), read alone."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {policies_stamp_sql('%s')}", [tenant_id])
        return cursor.fetchone()[0]


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
