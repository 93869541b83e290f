"""The workflow language's expressions (runs/expressions.py): pure, table-driven."""

import pytest

from runs.definitions import DefinitionError, steps_validate
from runs.expressions import (
    Evaluation,
    ExpressionError,
    ExpressionFailed,
    expression_compile,
    map_items,
    step_references,
    template_compile,
    when_result,
)

CONTEXT = {"run": {"id": "r1", "workflow": "wf", "input": {"ref": "R", "n": 3}},
           "steps": {"plan": {"output": {"amount": 25000, "payee": "X", "to": ["a", "b"],
                                         "ratio": 0.5},
                              "status": "succeeded"},
                     "my-step": {"output": {"v": 1}, "status": "succeeded"},
                     "skipped": {"output": None, "status": "skipped"}},
           "item": {"email": "a@x"}, "index": 2}


def fill(value):
    template, _ = template_compile(value, key=("input",))
    return value if template is None else Evaluation(CONTEXT).fill(template, "input")


@pytest.mark.parametrize(("given", "resolved"), [
    ({"a": 1, "b": "text"}, {"a": 1, "b": "text"}),
    ({"amount": "=steps.plan.output.amount"}, {"amount": 25000}),
    ({"note": "==starts with ="}, {"note": "=starts with ="}),
    ({"note": "=="}, {"note": "="}),
    ({"deep": [{"x": ["=run.input.ref", "plain", "==x"]}]},
     {"deep": [{"x": ["R", "plain", "=x"]}]}),
    ({"to": "=item.email", "n": "=index"}, {"to": "a@x", "n": 2}),
    ({"s": '=steps["my-step"].output.v + 1'}, {"s": 2}),
    ({"l": "=steps.plan.output.to"}, {"l": ["a", "b"]}),
    ({"m": '={"k": steps.plan.output.payee}'}, {"m": {"k": "X"}}),
    ({"r": "=steps.plan.output.ratio * 2.0"}, {"r": 1.0}),
    ({"u": "=uint(7)"}, {"u": 7}),
    ({"st": "=steps.skipped.status"}, {"st": "skipped"}),
    ({"has": "=has(steps.plan.output.amount)"}, {"has": True}),
    ({"cents": "=steps.plan.output.amount * 100"}, {"cents": 2500000}),
])
def test_templates_resolve_at_any_depth(given, resolved):
    result = fill(given)
    assert result == resolved
    if "cents" in resolved:  # money stays an integer of minor units
        assert type(result["cents"]) is int


def test_a_value_without_expressions_has_no_template():
    assert template_compile({"a": ["x", {"b": 1}]}, key=("input",)) == (None, [])


@pytest.mark.parametrize(("given", "fails_with"), [
    ({"a": "=steps.plan.output.missing"}, "no such key"),
    ({"a": "=steps.plan.output.payee + 1"}, "Unsupported operation"),
    ({"a": "=1 / 0"}, "division by zero"),
    ({"a": '=timestamp("2020-01-01T00:00:00Z")'}, "not JSON"),
    ({"a": '=b"ab"'}, "not JSON"),
    ({"a": "=steps.skipped.output.x"}, "input.a"),
])
def test_run_time_failures_are_expression_failures_naming_the_key(given, fails_with):
    with pytest.raises(ExpressionFailed) as caught:
        fill(given)
    assert fails_with in str(caught.value) and caught.value.code == "expression_error"


def test_when_and_map_check_their_result_type():
    evaluation = Evaluation(CONTEXT)
    assert when_result(evaluation, expression_compile("steps.plan.output.amount > 0")) is True
    assert map_items(evaluation, expression_compile("steps.plan.output.to")) == ["a", "b"]
    with pytest.raises(ExpressionFailed, match="not a boolean"):
        when_result(evaluation, expression_compile("steps.plan.output.amount"))
    with pytest.raises(ExpressionFailed, match="not a list"):
        map_items(evaluation, expression_compile("steps.plan.output.payee"))


def test_the_time_limit_fails_closed(settings):
    settings.FCORE_EXPRESSION_TIME_LIMIT_MS = 0
    template, _ = template_compile({"a": "=1"}, key=("input",))
    with pytest.raises(ExpressionFailed, match="time limit"):
        Evaluation(CONTEXT).fill(template, "input")


@pytest.mark.parametrize(("source", "steps"), [
    ("steps.a.output.x > 0 && steps.b.status == 'succeeded'", {"a", "b"}),
    ('steps["my-step"].output', {"my-step"}),
    ("steps['q.1'].status", {"q.1"}),
    ("'steps.fake' == run.input.steps", set()),
    ("run.input.x", set()),
])
def test_the_steps_an_expression_reads_are_known_statically(source, steps):
    assert step_references(source) == steps


@pytest.mark.parametrize(("source", "problem"), [
    ("steps[run.input.which].output", "read only as steps.<id>"),
    ("size(steps)", "read only as steps.<id>"),
    ("steps.a.input", "only output and status"),
])
def test_dynamic_step_reads_are_refused(source, problem):
    with pytest.raises(ExpressionError, match=problem):
        step_references(source)


@pytest.mark.parametrize(("source", "problem"), [
    ("1 +", "does not parse"),
    ("=steps.a.output", "without a leading '='"),
    ("[1, 2].map(x, x * 2)", "comprehension macros"),
    ("secret.key", "unknown variable"),
    ("(" * 13 + "1" + ")" * 13, "nesting deeper"),
    ("x" * 2001, "longer than"),
])
def test_expressions_that_cannot_be_published(source, problem):
    with pytest.raises(ExpressionError, match=problem):
        expression_compile(source)


def validate(*steps):
    return steps_validate(list(steps))


PLAN = {"id": "plan", "type": "external"}


@pytest.mark.parametrize(("step", "problem"), [
    ({"id": "pay", "type": "noop", "after": ["plan"], "when": "1"},
     "step 'pay': when: must be a boolean expression, not a int"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "when": "'yes'"},
     "when: must be a boolean expression, not a string"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "when": "[steps.plan.output]"},
     "when: must be a boolean expression, not a list"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "map": "{'a': 1}"},
     "map: must be a list expression, not a map"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "map": "3"},
     "map: must be a list expression, not a int"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "input": {"a": "=steps.later.output"}},
     "input.a: reads steps.later, which is not upstream"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "input": {"a": ["=steps.nope.output"]}},
     "input.a[0]: reads steps.nope, but there is no step 'nope'"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "input": {"a": "=item"}},
     "input.a: unknown variable(s) item"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "when": "item == 1", "map": "[1]"},
     "when: unknown variable(s) item"),
    ({"id": "pay", "type": "approval", "after": ["plan"], "map": "[1]"},
     "an approval step cannot be mapped"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "max_concurrency": 2},
     "only map steps take max_concurrency"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "map": "[1]", "max_concurrency": 0},
     "max_concurrency: must be an integer from 1"),
    ({"id": "pay", "type": "noop", "after": ["plan"], "input": {"a": "=1 +"}},
     "input.a: expression does not parse"),
])
def test_definitions_with_bad_language_are_refused_naming_step_and_key(step, problem):
    later = {"id": "later", "type": "noop", "after": ["plan"]}
    with pytest.raises(DefinitionError) as caught:
        validate(PLAN, step, later)
    assert problem in str(caught.value)
    assert caught.value.key[:2] == ("steps", 1)


def test_a_definition_reading_its_upstream_steps_is_clean():
    clean = validate(PLAN, {"id": "pay", "type": "external", "when": "steps.plan.output.ok",
                            "input": {"a": "=steps.plan.output.a"}},
                     {"id": "fan", "type": "noop", "map": "steps.plan.output.to",
                      "max_concurrency": 3, "input": {"to": "=item", "via": "=steps.pay.status"}})
    assert clean[2]["map"] == "steps.plan.output.to" and clean[2]["max_concurrency"] == 3
    assert clean[1]["when"] == "steps.plan.output.ok"


def test_map_items_must_be_storable_json():
    with pytest.raises(ExpressionFailed, match="items cannot be stored"):
        map_items(Evaluation(CONTEXT), expression_compile("[1.0 / 0.0]"))
