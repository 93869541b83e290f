"""The console with sub-workflows: the run page's graph links a workflow step to its
child run, the child's page links back to its parent, and the run list filters by
parent."""

from types import SimpleNamespace

import pytest

from fcore.interfaces.console.graph import step_graph_svg
from runs.definitions import definition_publish
from runs.models import Run
from runs.services import run_create
from tests.gates import test_console as base
from tests.gates.test_console import login

tenant, fast_passwords = base.tenant, base.fast_passwords


def test_a_linked_node_is_wrapped_in_an_escaped_link():
    steps = [SimpleNamespace(step_id="archive", after=[], status="running",
                             step_type="workflow", map_parent="", error=None),
             SimpleNamespace(step_id="other", after=[], status="pending",
                             step_type="noop", map_parent="", error=None)]
    svg = str(step_graph_svg(steps, {"archive": '/console/runs/x/?a="b"'}))
    assert '<a href="/console/runs/x/?a=&quot;b&quot;"><g class="node status-running ' \
           'child-link" data-step="archive">' in svg
    assert svg.count("<a href") == 1 and "open its child run" in svg


@pytest.mark.django_db
def test_the_run_pages_link_parent_and_child(tenant, django_capture_on_commit_callbacks):
    definition_publish(tenant=tenant, name="archive_leaf", actor="user:priya",
                       steps=[{"id": "store", "type": "external"}])
    definition_publish(tenant=tenant, name="with_leaf", actor="user:priya", steps=[
        {"id": "archive", "type": "workflow", "workflow": "archive_leaf"}])
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = run_create(tenant=tenant, workflow="with_leaf", input={}, actor="user:olivia")
    child = Run.objects.get(parent_run=run)
    client = login("olivia")
    body = client.get(f"/console/runs/{run.run_id}/").content.decode()
    assert (f'<a href="/console/runs/{child.run_id}/"><g class="node status-running '
            'child-link" data-step="archive">') in body
    assert 'id="child-runs"' in body and f"?parent={run.run_id}" in body
    child_page = client.get(f"/console/runs/{child.run_id}/").content.decode()
    assert f'<a href="/console/runs/{run.run_id}/" id="parent-run">' in child_page
    listed = client.get(f"/console/runs/?parent={run.run_id}").content.decode()
    assert f'href="/console/runs/{child.run_id}/"' in listed
    assert f'href="/console/runs/{run.run_id}/"' not in listed
