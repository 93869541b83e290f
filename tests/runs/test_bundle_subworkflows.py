"""Bundles with sub-workflows (DESIGN §11): an unknown child workflow, and a cycle of
sub-workflows across the bundle and what is already published, are refused whole, naming
workflow, step, key, and the line and column of the step's `workflow` key."""

import pytest
import yaml

from fcore.models import Tenant
from runs.bundles import BundleError, bundle_load
from runs.definitions import definition_publish
from runs.models import WorkflowDefinition

pytestmark = pytest.mark.django_db

BUNDLE = """\
tenant: tenant_sub_bundle
workflows:
  - name: agent_payment
    steps:
      - {id: pay, type: external}
      - id: archive
        type: workflow
        workflow: archive_flow
        input: {payment: "=steps.pay.output"}
  - name: archive_flow
    steps:
      - {id: store, type: noop}
"""


def load(text: str):
    return bundle_load(yaml.safe_load(text), actor="system:test", source="b.yaml", text=text)


def test_a_bundle_with_its_child_workflow_loads():
    summary = load(BUNDLE)
    assert [w["name"] for w in summary["workflows"]] == ["agent_payment", "archive_flow"]
    steps = WorkflowDefinition.objects.get(name="agent_payment").steps
    assert steps[1]["workflow"] == "archive_flow"


def test_an_unknown_child_workflow_is_refused_whole_with_its_position():
    text = BUNDLE.replace("workflow: archive_flow", "workflow: archive_flwo")
    with pytest.raises(BundleError) as caught:
        load(text)
    error = caught.value
    assert str(error).startswith(
        "b.yaml: workflow agent_payment: step 'archive': workflow: unknown workflow "
        "'archive_flwo'")
    assert (error.line, error.column) == (8, 9)
    assert error.key == ("workflows", 0, "steps", 1, "workflow")
    assert not WorkflowDefinition.objects.exists()  # refused whole


def test_a_child_workflow_published_before_is_found_and_a_missing_version_is_not():
    tenant = Tenant.objects.create(slug="tenant_sub_bundle", name="t")
    definition_publish(tenant=tenant, name="archive_flow", steps=[{"id": "s", "type": "noop"}],
                       actor="user:p")
    only_parent = BUNDLE.split("  - name: archive_flow")[0]
    load(only_parent)
    pinned = only_parent.replace("workflow: archive_flow",
                                 "workflow: archive_flow\n        version: 3")
    with pytest.raises(BundleError, match=r"unknown workflow 'archive_flow' version 3"):
        load(pinned)
    load(pinned.replace("version: 3", "version: 1"))


def test_a_cycle_of_sub_workflows_in_the_bundle_is_refused():
    text = BUNDLE.replace("      - {id: store, type: noop}\n",
                          "      - {id: store, type: noop}\n"
                          "      - {id: back, type: workflow, workflow: agent_payment}\n")
    with pytest.raises(BundleError) as caught:
        load(text)
    assert ("workflow agent_payment: step 'archive': workflow: a cycle of sub-workflows: "
            "agent_payment -> archive_flow -> agent_payment") in str(caught.value)
    assert (caught.value.line, caught.value.column) == (8, 9)


def test_a_workflow_that_starts_itself_is_a_cycle():
    text = BUNDLE.replace("workflow: archive_flow", "workflow: agent_payment")
    with pytest.raises(BundleError, match="a cycle of sub-workflows: agent_payment -> "
                                          "agent_payment"):
        load(text)


def test_a_cycle_through_an_already_published_definition_is_refused():
    tenant = Tenant.objects.create(slug="tenant_sub_bundle", name="t")
    definition_publish(tenant=tenant, name="middle", actor="user:p", steps=[
        {"id": "go", "type": "workflow", "workflow": "agent_payment"}])
    text = BUNDLE.replace("workflow: archive_flow", "workflow: middle")
    with pytest.raises(BundleError, match="agent_payment -> middle -> agent_payment") as caught:
        load(text)
    assert caught.value.key == ("workflows", 0, "steps", 1, "workflow")
    assert not WorkflowDefinition.objects.filter(name="agent_payment").exists()
