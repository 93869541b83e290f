"""Static limits on rules and the per-decision time limit (fail-closed)."""

import pytest

from gates.policies import MAX_NESTING, PolicySnapshot, RuleError, check_expression, evaluate


def test_nesting_is_capped():
    deep = "(" * (MAX_NESTING + 1) + "true" + ")" * (MAX_NESTING + 1)
    with pytest.raises(RuleError, match="nesting deeper"):
        check_expression(deep, rule_id="deep")
    check_expression("(" * MAX_NESTING + "true" + ")" * MAX_NESTING)


def test_brackets_inside_strings_do_not_count():
    check_expression('input.s == "' + "(" * 40 + '"')


def test_time_limit_denies_the_rules_not_reached():
    rules = tuple({"id": f"r{i}", "effect": "allow", "when": "true", "reason": "ok"}
                  for i in range(5))
    policy = PolicySnapshot(1, "p", 1, 1, {}, rules)
    decision = evaluate([policy], {"input": {}}, time_limit_s=-1)
    assert decision.decision == "deny"
    assert decision.reason.startswith("policy_error: p/r0: time limit")
    assert evaluate([policy], {"input": {}}).decision == "allow"
