"""The services that store JSON refuse values nested beyond FCORE_JSON_MAX_DEPTH or holding a
lone surrogate, whoever calls them (API, console, commands, bundles); the check itself is
iterative, so any depth gets an answer rather than a RecursionError."""

import pytest
import yaml

from audit.hashing import jcs_problem, json_shape_problem
from fcore.errors import BadRequest
from gates.models import Approval, Gate
from gates.services import Voter
from runs.bundles import BundleError, bundle_load
from runs.models import Run
from runs.services import run_create, run_gate_vote, step_report


def nested(depth: int, leaf=None):
    value = [] if leaf is None else leaf
    for _ in range(depth - (leaf is None)):
        value = [value]
    return value


def depth_of(value) -> int:
    depth = 0
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    return depth


@pytest.mark.parametrize("depth, expected", [(64, None), (65, "nested deeper than 64 levels"),
                                             (100_000, "nested deeper than 64 levels")])
def test_the_depth_check_answers_at_any_depth(depth, expected):
    value = nested(depth)
    assert depth_of(value) == depth
    problem = jcs_problem(value)
    assert (problem is None) if expected is None else (expected in problem)


@pytest.mark.parametrize("value, expected", [
    ({"a": "x\ud800"}, "$.a: lone surrogate U+D800"),
    ({"\udfff": 1}, "$: lone surrogate U+DFFF"),
    (["ok", {"b": ["\udbff"]}], "$[1].b[0]: lone surrogate U+DBFF"),
    ({"a": "x\x00"}, "$.a: NUL characters are not allowed"),
    ({"a": [1, {"b": 2**60}]}, "$.a[1].b: integer outside"),
    ({"a": float("nan")}, "$.a: not finite"),
    ({1: 2}, "$: keys must be strings"),
])
def test_the_first_problem_is_named_by_its_path(value, expected):
    assert jcs_problem(value).startswith(expected)


def test_the_shape_check_leaves_numbers_to_the_hash_check():
    assert json_shape_problem({"a": 2**60, "b": float("inf")}) is None
    assert json_shape_problem({"clef": "𝄞", "a": [{"b": "☃"}]}) is None


@pytest.fixture
def run(pt004, advance):
    with advance():
        run, _ = run_create(tenant=pt004, workflow="pt004_execution_spine",
                            input={"amount": 25000}, actor="client:harness")
    return run


@pytest.mark.django_db
@pytest.mark.parametrize("value", [nested(600), {"a": "\ud800"}, {"\ud800": 1}])
def test_run_create_refuses_the_input(pt004, value):
    with pytest.raises(BadRequest) as refused:
        run_create(tenant=pt004, workflow="pt004_execution_spine", input={"x": value},
                   actor="system:test")
    assert refused.value.code == "invalid"
    assert Run.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("value", [nested(600), {"a": "\udc00"}])
def test_a_step_report_and_a_vote_refuse_the_value(pt004, run, advance, value):
    with pytest.raises(BadRequest) as refused:
        step_report(tenant=pt004, run_id=run.run_id, step_id="step_1", actor="client:exec",
                    status="succeeded", output={"x": value})
    assert "output" in refused.value.context["errors"]
    with advance():
        step_report(tenant=pt004, run_id=run.run_id, step_id="step_1", actor="client:exec",
                    status="succeeded")
    gate = Gate.objects.get(run=run)
    with pytest.raises(BadRequest) as refused:
        run_gate_vote(tenant=pt004, run_id=run.run_id, gate_id=gate.id,
                      voter=Voter(actor="client:second"), decision="approve",
                      data={"x": value})
    assert refused.value.code == "invalid_input"
    assert Approval.objects.count() == 0


@pytest.mark.django_db
def test_a_bundle_with_a_deep_step_input_is_refused():
    bundle = yaml.safe_load(open("docs/examples/pt004.yaml", encoding="utf-8"))
    bundle["workflows"][0]["steps"][0]["input"] = {"x": nested(600)}
    with pytest.raises(BundleError, match="nested deeper than 64 levels"):
        bundle_load(bundle, actor="system:test")
