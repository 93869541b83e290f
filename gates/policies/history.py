"""Policy history for people: the versions of a policy, and what changed between two.

Read-only selectors and pure functions; restoring goes through
`gates.policies.versions.policy_restore` and simulating through
`gates.policies.simulate.policy_simulate`.

A version's spec is shown as pretty JSON (sorted keys, fixed order of the top-level fields),
so two versions diff line by line. The side-by-side table comes from `difflib.HtmlDiff`,
which escapes `&`, `<` and `>` in the text it shows; its change markers are the control
characters NUL and SOH, which `json.dumps` always writes as `\\u0000` and `\\u0001`, so no
text of a rule can forge one.
"""

import difflib
import json

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from gates.models import Policy, PolicyVersion

from .versions import rules_diff

SPEC_FIELDS = ("tier", "enabled", "applies_to", "rules")
DIFF_WRAP_COLUMN = 60


def policy_versions(policy: Policy) -> list[PolicyVersion]:
    """Every version of `policy`, newest first."""
    return list(policy.versions.order_by("-version"))


def version_spec(version: PolicyVersion) -> dict:
    """What a version decides with: tier, enabled, applies_to and rules."""
    return {field: getattr(version, field) for field in SPEC_FIELDS}


def pretty_json(value) -> str:
    """A JSON value indented for reading."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def version_rows(versions: list[PolicyVersion]) -> list[dict]:
    """Versions with applies_to as one line and rules as pretty JSON, for a table."""
    return [{"version": v, "applies_to": json.dumps(v.applies_to, ensure_ascii=False),
             "rules": pretty_json(v.rules)} for v in versions]


def spec_text(spec: dict) -> str:
    """A spec as pretty JSON, stable from one call to the next."""
    return pretty_json({field: spec.get(field) for field in SPEC_FIELDS})


def spec_changes(old: PolicyVersion, new: PolicyVersion) -> dict:
    """The fields that differ and the rule changes between two versions."""
    a, b = version_spec(old), version_spec(new)
    return {"fields_changed": [f for f in ("tier", "enabled", "applies_to") if a[f] != b[f]],
            "rules": rules_diff(a["rules"], b["rules"])}


def spec_unified_diff(old: PolicyVersion, new: PolicyVersion) -> str:
    """A unified diff of the two specs as pretty JSON (plain text)."""
    return "".join(difflib.unified_diff(
        spec_text(version_spec(old)).splitlines(keepends=True),
        spec_text(version_spec(new)).splitlines(keepends=True),
        fromfile=f"version {old.version}", tofile=f"version {new.version}"))


def spec_diff_table(old: PolicyVersion, new: PolicyVersion, *, context: bool = False
                    ) -> SafeString:
    """The two specs side by side as an HTML table, changes marked (escaped: safe to show)."""
    table = difflib.HtmlDiff(tabsize=2, wrapcolumn=DIFF_WRAP_COLUMN).make_table(
        spec_text(version_spec(old)).splitlines(),
        spec_text(version_spec(new)).splitlines(),
        fromdesc=escape(f"version {old.version}"), todesc=escape(f"version {new.version}"),
        context=context, numlines=3)
    return mark_safe(table)  # noqa: S308  (HtmlDiff escapes the text; see the docstring)
