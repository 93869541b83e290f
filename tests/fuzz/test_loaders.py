"""Property-based fuzzing of what admins and bundles feed in: CEL rules and bundles.

A rule string either is refused with RuleError when saved or, once accepted, decides every
context (never raises). A bundle either is refused with BundleError or loads. Nothing else
may escape: any other exception would be a 500 in the admin or a crashed command.
`FCORE_FUZZ_EXAMPLES` sets the examples per property (default 150; the figures in
docs/security.md are from a run with 5,000).
"""

import copy
import os

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gates.policies import PolicySnapshot, RuleError, check_expression, evaluate
from runs.bundles import BundleError, bundle_check, bundle_load

EXAMPLES = int(os.environ.get("FCORE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=list(HealthCheck))

# --- CEL rules ---------------------------------------------------------------------------

NAMES = ["input", "input.amount", "input.note", "run.input", "run.workflow", "step.id",
         "step.attempt", "actor.id", "actor.kind", "tenant.id", "now", "x", "input.list",
         "input['k']", "step.config"]
LITERALS = ["0", "1", "-1", "10000", "9223372036854775807", "18446744073709551615u",
            "1.5", "1e308", "'a'", "'\\u00e9'", "b'x'", "true", "false", "null", "[]",
            "[1, 2]", "{}", "{'a': 1}", "duration('1h')", "timestamp('2026-01-01T00:00:00Z')"]
OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&&", "||", "in"]
CALLS = ["size({})", "has({})", "int({})", "string({})", "double({})", "{}.startsWith('a')",
         "{}.matches('^(a+)+$')", "!{}", "-{}", "({})", "{} ? true : false", "[{}][0]",
         "{{'k': {}}}.k", "type({}) == int"]

atoms = st.sampled_from(NAMES + LITERALS)
expressions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(" ".join),
        st.tuples(st.sampled_from(CALLS), inner).map(lambda c: c[0].format(c[1])),
    ),
    max_leaves=12,
)
noise = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=10,
)
contexts = st.fixed_dictionaries({
    "input": st.dictionaries(st.sampled_from(["amount", "note", "list", "k"]), json_values,
                             max_size=4),
    "run": st.fixed_dictionaries({"input": json_values, "workflow": st.text(max_size=10)}),
    "step": st.fixed_dictionaries({"id": st.text(max_size=10),
                                   "attempt": st.integers(0, 5), "config": json_values}),
    "actor": st.fixed_dictionaries({"id": st.text(max_size=10), "kind": st.just("client")}),
    "tenant": st.fixed_dictionaries({"id": st.just("tenant_omega")}),
    "now": st.just("2026-12-02T00:00:00Z"),
})


def _accepted(expression: str) -> bool:
    try:
        check_expression(expression, rule_id="fuzz")
    except RuleError as exc:
        assert str(exc)  # a refusal says why
        event("rule refused")
        return False
    event("rule accepted")
    return True


@FUZZ
@given(expression=expressions | noise, context=contexts,
       effect=st.sampled_from(["allow", "flag", "deny"]))
def test_a_rule_is_refused_or_decides_every_context(expression, context, effect):
    if not _accepted(expression):
        return
    policy = PolicySnapshot(policy_id=1, name="fuzz", version=1, tier=1, applies_to={},
                            rules=({"id": "r", "effect": effect, "when": expression,
                                    "reason": "fuzz"},))
    decision = evaluate([policy], context)
    event(f"decision {decision.decision}")
    assert decision.decision in ("allow", "flag", "deny")
    if decision.reason.startswith("policy_error:"):
        assert decision.decision == "deny"


# --- bundles -----------------------------------------------------------------------------

STEP_TYPES = ["noop", "external", "approval", "http", "sleep", "python:runs.examples.echo",
              "python:os.system", "shell", "", 7]
gate_blocks = st.dictionaries(
    st.sampled_from(["required_approvals", "approver_group", "expires_in", "on_timeout",
                     "escalate_to", "input_schema", "quorum"]),
    st.one_of(json_values, st.sampled_from([1, 2, "two", 10**400, -1, "reject", "escalate",
                                            {"type": "object"}, {"$ref": "#"},
                                            {"$ref": "http://127.0.0.1:1/x"}])),
    max_size=4)
steps = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["a", "b", "c", "a/b", "", " ", "."]),
                     st.text(max_size=8), st.integers())},
    optional={"type": st.sampled_from(STEP_TYPES), "after": st.one_of(
        st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=3), st.sampled_from(["a", 1])),
        "gate": gate_blocks, "input": json_values, "config": json_values,
        "timeout_s": json_values, "retry": json_values, "extra": json_values})
rules = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["r1", "r2", ""]), st.text(max_size=6)),
     "effect": st.sampled_from(["allow", "flag", "deny", "maybe"]),
     "when": expressions | noise},
    optional={"reason": json_values, "gate": gate_blocks})
workflows = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["wf", "wf2"]), st.text(max_size=8), st.none()),
     "steps": st.one_of(st.lists(steps, max_size=4), json_values)},
    optional={"description": json_values})
policies = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["p1", "p2"]), st.text(max_size=8)),
     "rules": st.one_of(st.lists(rules, max_size=3), json_values)},
    optional={"tier": json_values, "applies_to": json_values, "enabled": json_values})
bundles = st.one_of(
    st.fixed_dictionaries(
        {"tenant": st.one_of(st.just("tenant_fuzz"), st.text(max_size=10), json_values)},
        optional={"workflows": st.one_of(st.lists(workflows, max_size=3), json_values),
                  "policies": st.one_of(st.lists(policies, max_size=3), json_values),
                  "name": json_values, "other": json_values}),
    json_values)


def refused_or_loaded(bundle) -> None:
    """The bundle is refused with a BundleError naming its source, or it loads."""
    try:
        bundle_check(bundle, source="fuzz")
    except BundleError as exc:
        assert str(exc).startswith("fuzz")
        event("bundle refused by the check")
        return
    try:
        bundle_load(bundle, actor="system:fuzz", source="fuzz")
    except BundleError as exc:
        assert str(exc).startswith("fuzz")
        event("bundle refused while loading")
        return
    event("bundle loaded")


@pytest.mark.django_db
@FUZZ
@given(bundle=bundles)
def test_a_bundle_is_refused_or_loads(bundle):
    refused_or_loaded(bundle)


# Mutants of a real bundle reach the loader's writes far more often than random shapes.
BASE = yaml.safe_load(open("docs/examples/pt004.yaml", encoding="utf-8"))


def _paths(value, prefix=()):
    yield prefix
    children = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, child in children:
        yield from _paths(child, (*prefix, key))


PATHS = [p for p in _paths(BASE) if p]
replacements = st.one_of(json_values, expressions, gate_blocks, st.lists(steps, max_size=3),
                         st.lists(rules, max_size=2), st.sampled_from(STEP_TYPES))


@pytest.mark.django_db
@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), replacements), min_size=1,
                      max_size=3))
def test_a_mutated_bundle_is_refused_or_loads(edits):
    bundle = copy.deepcopy(BASE)
    bundle["tenant"] = "tenant_fuzz"
    for path, value in edits:
        target = bundle
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this place
    refused_or_loaded(bundle)
