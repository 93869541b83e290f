"""Bundles with the workflow language (DESIGN §11): refused whole, naming workflow, step,
key, and the line and column of the key in the file; a good one loads with its output."""

import json

import pytest
from django.core.management import CommandError, call_command

from runs.bundles import BundleError, bundle_export, bundle_load
from runs.models import WorkflowDefinition

GOOD = """\
tenant: tenant_lang_bundle
workflows:
  - name: agent_payment
    output: "=steps.pay.output"
    steps:
      - {id: plan, type: external}
      - id: pay
        type: external
        after: [plan]
        when: "steps.plan.output.amount > 0"
        input: {amount: "=steps.plan.output.amount", note: "==literal"}
      - id: notify
        type: noop
        after: [pay]
        map: "steps.plan.output.recipients"
        max_concurrency: 5
        input: {to: "=item", n: "=index"}
"""


def load_text(text: str, source="b.yaml"):
    import yaml

    data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    return bundle_load(data, actor="system:test", source=source, text=text)


# (what is changed in GOOD, the message's middle, the line and column of the key)
BAD = [
    ('when: "steps.plan.output.amount > 0"', 'when: "steps.plan.output.amount >"',
     "workflow agent_payment: step 'pay': when: expression does not parse", (10, 9)),
    ('amount: "=steps.plan.output.amount"', 'amount: "=steps.notify.output"',
     "step 'pay': input.amount: reads steps.notify, which is not upstream", (11, 17)),
    ('when: "steps.plan.output.amount > 0"', 'when: "\'yes\'"',
     "step 'pay': when: must be a boolean expression, not a string", (10, 9)),
    ("        type: noop\n", "        type: approval\n",
     "step 'notify': map: an approval step cannot be mapped", (15, 9)),
    ('output: "=steps.pay.output"', 'output: "=steps.nope.output"',
     "workflow agent_payment: output: reads steps.nope, but there is no step 'nope'", (4, 5)),
    ('to: "=item"', 'to: "=item.x +"',
     "step 'notify': input.to: expression does not parse", (17, 17)),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new", "message", "position"), BAD)
def test_a_bad_bundle_is_refused_naming_workflow_step_key_and_position(old, new, message,
                                                                      position):
    assert old in GOOD
    with pytest.raises(BundleError) as caught:
        load_text(GOOD.replace(old, new))
    text = str(caught.value)
    assert text.startswith("b.yaml: workflow agent_payment: ") and message in text
    assert (caught.value.line, caught.value.column) == position
    assert text.endswith(f"(at line {position[0]}, column {position[1]})")
    assert not WorkflowDefinition.objects.exists()


@pytest.mark.django_db
def test_a_json_bundle_reports_the_position_too():
    import yaml

    text = json.dumps(yaml.safe_load(GOOD.replace('"=steps.plan.output.amount"',
                                                  '"=steps.plan.output.amount +"')), indent=2)
    with pytest.raises(BundleError) as caught:
        load_text(text, source="b.json")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if '"amount"' in row)
    assert caught.value.line == line and "input.amount: expression does not parse" in str(
        caught.value)


@pytest.mark.django_db
def test_load_workflows_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace('map: "steps.plan.output.recipients"', 'map: "{}"'))
    with pytest.raises(CommandError, match=r"map: must be a list expression, not a map "
                                           r"\(at line 15, column 9\)"):
        call_command("load_workflows", str(path))


@pytest.mark.django_db
def test_a_good_bundle_loads_with_its_output_and_exports_back_unchanged():
    summary = load_text(GOOD)
    assert summary["workflows"] == [{"name": "agent_payment", "version": 1, "changed": True}]
    definition = WorkflowDefinition.objects.get()
    assert definition.output == "=steps.pay.output"
    assert definition.steps[2]["map"] == "steps.plan.output.recipients"
    from fcore.models import Tenant

    exported = bundle_export(Tenant.objects.get(slug="tenant_lang_bundle"))
    again = bundle_load(exported, actor="system:test")
    assert again["workflows"][0]["changed"] is False
