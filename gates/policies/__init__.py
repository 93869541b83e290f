"""Policies: rules over a context, their versions, their history and their simulation.

The one public API of policies; callers outside this package import from here only.

- `evaluation`: pure evaluation of CEL rules over a decision context (DESIGN §6), and the
  checks a rule passes before it is saved;
- `versions`: saving a policy as a new immutable version (`FC-ADM-001`), and finding the
  enabled policies that apply to a step;
- `history`: the versions of a policy, side by side;
- `simulate`: stored decisions re-evaluated under draft policies.
"""

from .evaluation import (
    MAX_NESTING,
    MAX_RULE_LENGTH,
    Decision,
    PolicySnapshot,
    RuleError,
    check_expression,
    evaluate,
    validate_applies_to,
    validate_rules,
    validate_tier,
)
from .history import (
    policy_versions,
    spec_changes,
    spec_diff_table,
    spec_unified_diff,
    version_rows,
)
from .simulate import (
    DEFAULT_LIMIT,
    PolicyVersions,
    SimulationReport,
    decision_context,
    policy_simulate,
)
from .versions import (
    policies_applicable,
    policies_enabled,
    policies_enabled_at,
    policies_enabled_of,
    policies_kept_clear,
    policies_stamp,
    policies_stamp_sql,
    policy_restore,
    policy_save,
)

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_NESTING",
    "MAX_RULE_LENGTH",
    "Decision",
    "PolicySnapshot",
    "PolicyVersions",
    "RuleError",
    "SimulationReport",
    "check_expression",
    "decision_context",
    "evaluate",
    "policies_applicable",
    "policies_enabled",
    "policies_enabled_at",
    "policies_enabled_of",
    "policies_kept_clear",
    "policies_stamp",
    "policies_stamp_sql",
    "policy_restore",
    "policy_save",
    "policy_simulate",
    "policy_versions",
    "spec_changes",
    "spec_diff_table",
    "spec_unified_diff",
    "validate_applies_to",
    "validate_rules",
    "validate_tier",
    "version_rows",
]
