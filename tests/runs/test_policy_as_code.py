"""Policy as code: export/import round trip, simulation from the command line, dry run."""

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from gates.models import PolicyVersion
from runs.bundles import bundle_export, bundle_load
from runs.models import WorkflowDefinition

pytestmark = pytest.mark.django_db


def state(tenant):
    return (sorted(WorkflowDefinition.objects.filter(tenant=tenant)
                   .values_list("name", "version", "spec_hash")),
            sorted(PolicyVersion.objects.filter(policy__tenant=tenant)
                   .values_list("policy__name", "version", "spec_hash")),
            AuditEvent.objects.filter(tenant=tenant).count())


def test_export_then_load_changes_nothing(pt004, tmp_path, capsys):
    before = state(pt004)
    out = tmp_path / "bundle.yaml"
    call_command("export_bundle", tenant=pt004.slug, output=str(out))
    exported = yaml.safe_load(out.read_text())
    assert {w["name"] for w in exported["workflows"]} >= {"pt004_execution_spine"}
    assert {p["name"] for p in exported["policies"]} >= {"pt004_spend_review"}
    call_command("load_workflows", str(out))
    assert state(pt004) == before
    assert "unchanged" in capsys.readouterr().out


def test_export_as_json_and_a_change_becomes_a_version(pt004, tmp_path):
    out = tmp_path / "bundle.json"
    call_command("export_bundle", tenant=pt004.slug, output=str(out))
    bundle = json.loads(out.read_text())
    policy = next(p for p in bundle["policies"] if p["name"] == "pt004_spend_review")
    policy["rules"][0]["when"] = policy["rules"][0]["when"].replace("10000", "20000")
    summary = bundle_load(bundle, actor="user:priya")
    changed = {p["name"]: p for p in summary["policies"]}
    assert changed["pt004_spend_review"] == {"name": "pt004_spend_review", "version": 2,
                                             "changed": True}
    assert not changed["pt004_hard_limits"]["changed"]
    exported = {p["name"]: p for p in bundle_export(pt004)["policies"]}
    assert exported["pt004_spend_review"]["rules"][0]["when"].endswith("> 20000")


def test_export_unknown_tenant(db):
    with pytest.raises(CommandError, match="no tenant"):
        call_command("export_bundle", tenant="nope")


@pytest.fixture
def history(api):
    """Recorded decisions: step_2 decided for amounts 500 (allow), 25000 (flag),
    5000000 (deny); step_1 allow for each."""
    for amount in (500, 25000, 5_000_000):
        run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                              "input": {"amount": amount}}).json()["run_id"]
        api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})


def draft_bundle(tmp_path, threshold):
    bundle = yaml.safe_load(open("docs/examples/pt004.yaml", encoding="utf-8"))
    rule = bundle["policies"][0]["rules"][0]
    rule["when"] = rule["when"].replace("10000", str(threshold))
    path = tmp_path / "draft.yaml"
    path.write_text(yaml.safe_dump(bundle))
    return path


def test_simulation_counts_the_decisions_that_would_change(history, tmp_path, capsys):
    versions = PolicyVersion.objects.count()
    events = AuditEvent.objects.count()
    call_command("policy_simulate", bundle=str(draft_bundle(tmp_path, 100)), as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert report["evaluated"] == 6
    assert report["transitions"] == {"allow→flag": 1}
    assert report["examples"][0]["step_id"] == "step_2"
    assert PolicyVersion.objects.count() == versions and AuditEvent.objects.count() == events


def test_simulation_fails_ci_on_change_only(history, tmp_path):
    call_command("policy_simulate", bundle=str(draft_bundle(tmp_path, 10000)),
                 fail_on_change=True)
    with pytest.raises(CommandError, match="1 decision"):
        call_command("policy_simulate", bundle=str(draft_bundle(tmp_path, 100)),
                     fail_on_change=True)


def test_simulation_refuses_a_bad_bundle(history, tmp_path):
    path = tmp_path / "bad.yaml"
    bundle = yaml.safe_load(open("docs/examples/pt004.yaml", encoding="utf-8"))
    bundle["policies"][1]["rules"][0]["when"] = "input.amount >"
    path.write_text(yaml.safe_dump(bundle))
    with pytest.raises(CommandError, match=r"pt004_hard_limits.*over-hard-limit.*column"):
        call_command("policy_simulate", bundle=str(path))


def test_dry_run_endpoint_decides_without_creating_anything(api):
    from runs.models import Run

    events = AuditEvent.objects.count()
    flagged = api.post("/workflows/policies/evaluate",
                       {"workflow": "pt004_execution_spine", "step_id": "step_2",
                        "input": {"amount": 25000}})
    assert flagged.status_code == 200, flagged.json()
    body = flagged.json()
    assert body["decision"] == "flag" and body["rules_triggered"][0]["rule"] == "large-amount"
    assert body["context"]["actor"] == {"id": "harness", "kind": "client"}
    denied = api.post("/workflows/policies/evaluate",
                      {"workflow": "pt004_execution_spine", "step_id": "step_2",
                       "input": {"amount": 5_000_000}, "actor": "user:olivia"}).json()
    assert denied["decision"] == "deny" and denied["context"]["actor"]["kind"] == "user"
    allowed = api.post("/workflows/policies/evaluate",
                       {"workflow": "pt004_execution_spine", "step_id": "step_1",
                        "input": {"amount": 25000}}).json()
    assert allowed["decision"] == "allow"
    assert Run.objects.count() == 0 and AuditEvent.objects.count() == events


@pytest.mark.parametrize("body,code", [
    ({"workflow": "nope", "step_id": "s"}, "unknown_workflow"),
    ({"workflow": "pt004_execution_spine", "step_id": "nope"}, "invalid"),
    ({"workflow": "pt004_execution_spine"}, "invalid"),
    ({"workflow": "pt004_execution_spine", "step_id": "step_1", "input": [1]}, "invalid"),
    ({"workflow": "pt004_execution_spine", "step_id": "step_1", "actor": "nobody"}, "invalid"),
])
def test_dry_run_bad_input(api, body, code):
    response = api.post("/workflows/policies/evaluate", body)
    assert response.status_code == 400 and response.json()["code"] == code


def test_simulation_shows_progress_on_stderr_only_when_asked(history, tmp_path):
    bundle = str(draft_bundle(tmp_path, 100))

    def simulate(*args):
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("policy_simulate", "--bundle", bundle, *args, stdout=out, stderr=err)
        except CommandError as exc:
            return out.getvalue(), err.getvalue(), str(exc)
        return out.getvalue(), err.getvalue(), None

    plain, with_bar = simulate(), simulate("--progress")
    assert plain[1] == "" and plain[2] is None
    assert (with_bar[0], with_bar[2]) == (plain[0], None)
    assert "policy_simulate" in with_bar[1] and "100%" in with_bar[1] and "6/6" in with_bar[1]
    failing_plain = simulate("--fail-on-change")
    failing_bar = simulate("--fail-on-change", "--progress")
    assert failing_plain[2] and "1 decision" in failing_plain[2]
    assert (failing_bar[0], failing_bar[2]) == (failing_plain[0], failing_plain[2])
    assert "decision" in failing_bar[1]
