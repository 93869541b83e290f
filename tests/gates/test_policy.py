"""Pure tests of `gates.policies.evaluation`: combination, fail-closed errors, rule checks,
patterns."""

from datetime import UTC, datetime, timedelta

import pytest

from gates.policies import (
    MAX_RULE_LENGTH,
    PolicySnapshot,
    RuleError,
    check_expression,
    evaluate,
    validate_applies_to,
    validate_rules,
)

NOW = datetime(2026, 2, 6, 10, 15, tzinfo=UTC)


def rule(rule_id, effect, when="true", reason=None, gate=None):
    item = {"id": rule_id, "effect": effect, "when": when, "reason": reason or rule_id}
    if gate is not None:
        item["gate"] = gate
    return item


def policy(name, *rules, tier=1, policy_id=None, version=1, applies_to=None):
    return PolicySnapshot(
        policy_id=policy_id if policy_id is not None else abs(hash(name)) % 10_000,
        name=name, version=version, tier=tier,
        applies_to=applies_to or {"workflows": ["*"], "step_types": ["*"]},
        rules=tuple(rules))


def context(**input_):
    return {
        "run": {"id": "r-1", "workflow": "wf", "version": 1, "input": input_,
                "created_by": "user:olivia", "metadata": {}},
        "step": {"id": "step_1", "type": "external", "index": 0, "config": {}, "attempt": 1},
        "input": input_,
        "actor": {"id": "olivia", "kind": "user"},
        "tenant": {"id": "tenant_omega"},
        "now": NOW,
    }


# --- combination -------------------------------------------------------------------------

@pytest.mark.parametrize(("effects", "expected"), [
    ([], "allow"),
    (["allow"], "allow"),
    (["allow", "allow"], "allow"),
    (["flag"], "flag"),
    (["allow", "flag"], "flag"),
    (["flag", "allow"], "flag"),
    (["deny"], "deny"),
    (["flag", "deny"], "deny"),
    (["deny", "flag"], "deny"),
    (["allow", "flag", "deny"], "deny"),
    (["deny", "allow", "flag"], "deny"),
])
def test_deny_beats_flag_beats_allow_across_policies(effects, expected):
    policies = [policy(f"p{i}", rule(f"r{i}", effect)) for i, effect in enumerate(effects)]
    assert evaluate(policies, context()).decision == expected


@pytest.mark.parametrize(("rules", "expected"), [
    ([rule("a", "allow"), rule("f", "flag")], "flag"),
    ([rule("f", "flag"), rule("d", "deny")], "deny"),
    ([rule("d", "deny", "false"), rule("f", "flag")], "flag"),
    ([rule("d", "deny", "false"), rule("f", "flag", "false")], "allow"),
])
def test_the_same_combination_holds_within_one_policy(rules, expected):
    assert evaluate([policy("one", *rules)], context()).decision == expected


def test_rules_that_fire_are_recorded_with_their_reasons():
    policies = [
        policy("spend", rule("big", "flag", "input.amount > 100", "large amount"),
               rule("small", "flag", "input.amount < 10", "tiny amount"), tier=2,
               policy_id=7, version=3),
        policy("limits", rule("huge", "deny", "input.amount > 1000", "over the limit"),
               rule("ok", "allow", "input.amount > 0", "positive"), tier=3, policy_id=8),
    ]
    decision = evaluate(policies, context(amount=500))
    assert decision.decision == "flag"
    assert decision.reason == "large amount"
    assert decision.rules_triggered == [
        {"policy": "spend", "policy_id": 7, "rule": "big", "effect": "flag",
         "reason": "large amount", "tier": 2},
        {"policy": "limits", "policy_id": 8, "rule": "ok", "effect": "allow",
         "reason": "positive", "tier": 3},
    ]
    assert (decision.policy_id, decision.policy_version, decision.tier) == (7, 3, 2)
    assert [(p["name"], p["effect"]) for p in decision.policies] == [
        ("spend", "flag"), ("limits", "allow")]
    assert decision.policy_versions == [{"policy_id": 7, "version": 3},
                                        {"policy_id": 8, "version": 1}]


def test_the_reason_joins_every_winning_rule_and_the_highest_tier_decides():
    policies = [
        policy("low", rule("a", "deny", reason="reason a"), tier=1, policy_id=1),
        policy("high", rule("b", "deny", reason="reason b"),
               rule("c", "deny", reason="reason a"), tier=5, policy_id=2, version=4),
        policy("flagger", rule("f", "flag", reason="flagged"), tier=9, policy_id=3),
    ]
    decision = evaluate(policies, context())
    assert decision.decision == "deny"
    assert decision.reason == "reason a; reason b"  # each reason once, in firing order
    assert (decision.policy_id, decision.policy_version, decision.tier) == (2, 4, 5)


@pytest.mark.parametrize(("policies", "reason"), [
    ([], "no applicable policy"),
    ([policy("quiet", rule("never", "deny", "false"))], "no rule fired"),
])
def test_allow_without_a_firing_rule_says_why(policies, reason):
    decision = evaluate(policies, context())
    assert decision.decision == "allow" and decision.reason == reason
    assert decision.rules_triggered == [] and decision.gate == {}


# --- fail-closed evaluation errors -------------------------------------------------------

@pytest.mark.parametrize(("expression", "detail"), [
    ("input.missing > 1", "no such attribute 'missing'"),
    ("run.metadata.region == 'eu'", "no such attribute 'region'"),
    ('input.amount > "ten"', "No such overload"),
    ("input.amount + 1", "rule returned int, not a boolean"),
    ('"a" + "b"', "rule returned str, not a boolean"),
    ("input.amount / 0 == 1", "division by zero"),
])
def test_an_evaluation_error_denies_with_a_policy_error_reason(expression, detail):
    decision = evaluate([policy("p", rule("r", "allow", expression))], context(amount=5))
    assert decision.decision == "deny"
    assert decision.reason.startswith("policy_error: p/r: ")
    assert detail in decision.reason
    assert decision.rules_triggered[0]["effect"] == "deny"
    assert decision.rules_triggered[0]["reason"] == decision.reason


def test_an_evaluation_error_outranks_a_flag_of_another_policy():
    policies = [policy("flagger", rule("f", "flag")),
                policy("broken", rule("b", "flag", "input.nothing_here"))]
    decision = evaluate(policies, context())
    assert decision.decision == "deny"
    assert decision.reason.startswith("policy_error: broken/b:")


# --- check_expression --------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "line", "column"), [
    ("input.amount >", 1, 15),
    ("1 +", 1, 4),
    ("input.amount > 1 &&\n  (step.id == ", 2, 15),
])
def test_check_expression_refuses_syntax_errors_with_line_and_column(expression, line, column):
    with pytest.raises(RuleError) as info:
        check_expression(expression, rule_id="r1")
    assert (info.value.rule_id, info.value.line, info.value.column) == ("r1", line, column)
    message = str(info.value)
    assert message.startswith("rule 'r1': Syntax error")
    assert message.endswith(f"at line {line}, column {column}")


@pytest.mark.parametrize(("expression", "names"), [
    ("request.amount > 1", "request"),
    ("x == 1", "x"),
    ("input.amount > limit && user.admin", "limit, user"),
])
def test_check_expression_refuses_unknown_variables(expression, names):
    with pytest.raises(RuleError, match=rf"unknown variable\(s\) {names};"):
        check_expression(expression)


@pytest.mark.parametrize("expression", [
    "[1, 2].exists(x, x > 1)",
    "[1, 2].map(x, x * 2) == [2, 4]",
    "[1, 2].all(x, x > 0)",
    "[1, 2].filter(x, x > 1).size() == 1",
    "[1, 2].exists_one(x, x > 1)",
    "has(input.items) && input.items.exists(i, i.price > 100)",
])
def test_check_expression_refuses_comprehension_macros(expression):
    with pytest.raises(RuleError, match="(?i)comprehension macro"):
        check_expression(expression)


@pytest.mark.parametrize("expression", [
    "[1, 2].exists(input, input > 1)",
    "[1, 2].map(run, run * 2) == [2, 4]",
    "input.items.all(step, step > 0)",
    "input.items.map(run, input.items.map(step, input.items.map(actor, 1))).size() > 0",
])
def test_check_expression_refuses_macros_whose_variable_shadows_a_context_name(expression):
    # The module promises that comprehension macros are refused (CEL has no cost limit);
    # naming the iteration variable after a context variable must not slip past that.
    with pytest.raises(RuleError):
        check_expression(expression)


@pytest.mark.parametrize("expression", [
    "true",
    'step.id == "step_2" && has(input.amount) && input.amount > 10000',
    'actor.kind == "user" && tenant.id.startsWith("tenant_")',
    'now > timestamp("2026-01-01T00:00:00Z")',
    'size(run.input) > 0 && run.version >= 1',
])
def test_check_expression_accepts_rules_over_the_context(expression):
    check_expression(expression)


def test_check_expression_refuses_over_long_expressions():
    just_right = "true" + " && true" * ((MAX_RULE_LENGTH - 4) // 8)
    assert len(just_right) <= MAX_RULE_LENGTH
    check_expression(just_right)
    too_long = just_right + " && true"
    assert len(too_long) > MAX_RULE_LENGTH
    with pytest.raises(RuleError, match=f"longer than {MAX_RULE_LENGTH} characters"):
        check_expression(too_long, rule_id="long")


@pytest.mark.parametrize("expression", ["", "   ", None, 42])
def test_check_expression_refuses_empty_or_non_text(expression):
    with pytest.raises(RuleError, match="non-empty CEL expression"):
        check_expression(expression)


# --- validate_rules ----------------------------------------------------------------------

@pytest.mark.parametrize(("rules", "message"), [
    ("not a list", "rules must be a list"),
    (["nope"], "rule #1 must be an object"),
    ([rule("a", "allow"), {"effect": "deny", "when": "true"}], "rule #2 has no id"),
    ([rule("a", "allow"), rule("a", "deny")], "rule 'a': duplicate rule id"),
    ([rule("a", "block")], "rule 'a': effect must be one of allow, flag, deny"),
    ([{"id": "a", "when": "true"}], "rule 'a': effect must be one of"),
    ([rule("a", "deny", gate={"required_approvals": 2})], "rule 'a': 'gate' is an object on a"),
    ([rule("a", "allow", gate={})], "rule 'a': 'gate' is an object on a flag rule"),
    ([rule("a", "flag", gate={"quorum": 2})], "rule 'a': gate.quorum: unknown setting"),
    ([rule("a", "flag", gate=[2])], "rule 'a': 'gate' is an object"),
    ([rule("ok", "flag"), rule("bad", "deny", "input.amount >")],
     "rule 'bad': Syntax error"),
])
def test_validate_rules_refuses(rules, message):
    with pytest.raises(RuleError) as info:
        validate_rules(rules)
    assert str(info.value).startswith(message)


def test_validate_rules_normalises_and_keeps_flag_gates():
    clean = validate_rules([
        {"id": " big ", "effect": "flag", "when": "input.amount > 1",
         "gate": {"required_approvals": 2, "approver_group": "finance"}, "extra": "dropped"},
        {"id": "no-reason", "effect": "deny", "when": "false"},
    ])
    assert clean == [
        {"id": "big", "effect": "flag", "when": "input.amount > 1", "reason": "big",
         "gate": {"required_approvals": 2, "approver_group": "finance"}},
        {"id": "no-reason", "effect": "deny", "when": "false", "reason": "no-reason"},
    ]


@pytest.mark.parametrize("applies_to", [
    ["*"], {"workflows": "*"}, {"workflows": ["*"], "steps": ["*"]}, {"step_types": [1]},
])
def test_validate_applies_to_refuses_bad_shapes(applies_to):
    with pytest.raises(RuleError, match="applies_to"):
        validate_applies_to(applies_to)


def test_validate_applies_to_defaults_to_everything():
    assert validate_applies_to(None) == {"workflows": ["*"], "step_types": ["*"]}
    assert validate_applies_to({"workflows": ["pay_*"]}) == {
        "workflows": ["pay_*"], "step_types": ["*"]}


# --- applies() ---------------------------------------------------------------------------

@pytest.mark.parametrize(("applies_to", "workflow", "step_type", "expected"), [
    ({"workflows": ["*"], "step_types": ["*"]}, "anything", "noop", True),
    ({}, "anything", "noop", True),
    ({"workflows": ["pt004_*"]}, "pt004_execution_spine", "external", True),
    ({"workflows": ["pt004_*"]}, "vendor_payment", "external", False),
    ({"workflows": ["vendor_payment"], "step_types": ["external"]},
     "vendor_payment", "external", True),
    ({"workflows": ["vendor_payment"], "step_types": ["external"]},
     "vendor_payment", "noop", False),
    ({"workflows": ["a", "b"], "step_types": ["noop", "approval"]}, "b", "approval", True),
    ({"workflows": ["Vendor_*"]}, "vendor_payment", "noop", False),  # case-sensitive
    ({"workflows": ["pay?"]}, "pay1", "noop", True),
    ({"workflows": ["pay?"]}, "pay12", "noop", False),
    ({"workflows": []}, "vendor_payment", "noop", False),
])
def test_applies_matches_workflow_and_step_type_patterns(applies_to, workflow, step_type,
                                                          expected):
    assert policy("p", applies_to=applies_to).applies(workflow, step_type) is expected


# --- gate settings of flag rules ---------------------------------------------------------

def test_the_decision_carries_the_strictest_gate_of_the_flag_rules_that_fired():
    policies = [
        policy("a", rule("two", "flag", gate={"required_approvals": 2,
                                              "approver_group": "finance"})),
        policy("b", rule("three", "flag", gate={"required_approvals": 3,
                                                "approver_group": "ops", "expires_in": 60})),
        policy("c", rule("five-not-fired", "flag", "false", gate={"required_approvals": 5})),
        policy("d", rule("plain", "flag")),
    ]
    decision = evaluate(policies, context())
    assert decision.decision == "flag"
    assert decision.gate == {"required_approvals": 3, "approver_group": "finance",
                             "expires_in": 60}
    assert all("gate" not in fired for fired in decision.rules_triggered)


def test_a_deny_drops_the_gates_of_flag_rules():
    policies = [policy("a", rule("f", "flag", gate={"required_approvals": 2})),
                policy("b", rule("d", "deny"))]
    decision = evaluate(policies, context())
    assert decision.decision == "deny" and decision.gate == {}


# --- now ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ('now > timestamp("2026-01-01T00:00:00Z")', "flag"),
    ('now < timestamp("2026-01-01T00:00:00Z")', "allow"),
    ('now >= timestamp("2026-02-06T10:15:00Z")', "flag"),
    ('now > timestamp("2026-02-06T10:15:00Z")', "allow"),
    ('now - duration("24h") > timestamp("2026-02-05T00:00:00Z")', "flag"),
    ('now.getHours() >= 9 && now.getHours() < 17', "flag"),
])
def test_now_is_a_timestamp_rules_can_compare(expression, expected):
    check_expression(expression)
    decision = evaluate([policy("hours", rule("r", "flag", expression))], context())
    assert decision.decision == expected, decision.reason


def test_now_follows_the_context_clock():
    rules = rule("late", "flag", 'now > timestamp("2026-02-06T12:00:00Z")')
    before = evaluate([policy("p", rules)], context())
    after = evaluate([policy("p", rules)], {**context(), "now": NOW + timedelta(hours=3)})
    assert (before.decision, after.decision) == ("allow", "flag")
