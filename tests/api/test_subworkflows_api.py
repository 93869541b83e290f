"""Sub-workflows through the API: a run shows `parent` and `children`, the run list
filters by parent (within the tenant only), and the parent's evidence pack lists its
children, bound to the events that started them, and verifies offline."""

import copy

import pytest

from audit.verify_pack import Failure, verify_pack
from runs.definitions import definition_publish
from runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def family(api, pt004):
    """A completed parent run and its completed child run."""
    definition_publish(tenant=pt004, name="archive_flow", actor="user:p",
                       steps=[{"id": "store", "type": "external"}],
                       output={"stored": "=steps.store.output.where"})
    definition_publish(tenant=pt004, name="with_archive", actor="user:p", steps=[
        {"id": "archive", "type": "workflow", "workflow": "archive_flow",
         "input": {"doc": "=run.input.doc"}}])
    parent = api.post("/workflows/runs", {"workflow": "with_archive",
                                          "input": {"doc": "d-1"}}).json()
    child_id = parent["children"][0]
    assert api.patch(f"/workflows/runs/{child_id}/steps/store",
                     {"status": "succeeded", "output": {"where": "vault"}}).status_code == 200
    return parent["run_id"], child_id


def test_a_run_shows_its_parent_and_children(api, family):
    parent_id, child_id = family
    parent = api.get(f"/workflows/runs/{parent_id}").json()
    child = api.get(f"/workflows/runs/{child_id}").json()
    assert parent["parent"] is None and parent["children"] == [child_id]
    assert child["parent"] == {"run_id": parent_id, "step_id": "archive"}
    assert child["children"] == [] and child["input"] == {"doc": "d-1"}
    assert parent["status"] == "completed"
    archive = parent["steps"][0]
    assert archive["step_type"] == "workflow"
    assert archive["output"] == {"run_id": child_id, "workflow_hash": child["workflow_hash"],
                                 "output": {"stored": "vault"}}


def test_the_run_list_filters_by_parent_within_the_tenant(api, family, other_tenant):
    parent_id, child_id = family
    listed = api.get(f"/workflows/runs?parent={parent_id}").json()
    assert [r["run_id"] for r in listed["results"]] == [child_id]
    assert listed["results"][0]["parent"] == {"run_id": parent_id, "step_id": "archive"}
    assert api.get(f"/workflows/runs?parent={child_id}").json()["results"] == []
    bad = api.get("/workflows/runs?parent=not-a-uuid")
    assert bad.status_code == 400 and "parent" in bad.json()["errors"]
    # another tenant's run as a parent: its children are not found
    Run.objects.filter(pk=child_id).update(tenant=other_tenant)
    assert api.get(f"/workflows/runs?parent={parent_id}").json()["results"] == []
    assert api.get(f"/workflows/runs/{child_id}").status_code == 404


def test_the_parents_evidence_pack_lists_its_children_and_verifies(api, family):
    parent_id, child_id = family
    child = api.get(f"/workflows/runs/{child_id}").json()
    pack = api.get(f"/workflows/runs/{parent_id}/evidence").json()
    assert pack["children"] == [{"run_id": child_id, "step_id": "archive", "attempt": 1,
                                 "workflow": "archive_flow", "version": 1,
                                 "workflow_hash": child["workflow_hash"]}]
    lines = verify_pack(pack)
    assert "1 child runs match events" in lines[1]
    child_pack = api.get(f"/workflows/runs/{child_id}/evidence").json()
    assert child_pack["run"]["parent"] == {"run_id": parent_id, "step_id": "archive"}
    assert child_pack["children"] == []
    verify_pack(child_pack)


def failure_of(pack) -> str:
    with pytest.raises(Failure) as caught:
        verify_pack(pack)
    return str(caught.value)


def test_a_changed_or_missing_child_is_caught(api, family):
    parent_id, child_id = family
    pack = api.get(f"/workflows/runs/{parent_id}/evidence").json()
    cases = {
        "children[0].workflow_hash: is not the seal its step's output holds":
            lambda p: p["children"][0].update(workflow_hash="0" * 64),
        "children[0]: no FC-STEP-001 event started this child run":
            lambda p: p["children"][0].update(workflow="other"),
        "children[0].extra: is not a field of the format":
            lambda p: p["children"][0].update(extra=1),
        "starts a child run that children does not list":
            lambda p: p.update(children=[]),
    }
    for message, change in cases.items():
        changed = copy.deepcopy(pack)
        change(changed)
        assert message in failure_of(changed), message
    child_pack = api.get(f"/workflows/runs/{child_id}/evidence").json()
    child_pack["run"]["parent"]["step_id"] = "other"
    assert failure_of(child_pack) == ("run.parent: differs from the parent in events[0] "
                                      "(FC-RUN-001)")
