"""Bundles and the management commands that feed and inspect FC."""

import copy
import json
from io import StringIO

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from audit.services import admin_stream_name
from fcore.models import ApiClient, Membership, Tenant
from gates.models import Policy, PolicyVersion
from gates.policies import RuleError, policy_save
from runs.bundles import BundleError, bundle_check, bundle_load
from runs.models import Run, WorkflowDefinition

PT004 = "docs/examples/pt004.yaml"


def read(path=PT004) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def counts() -> dict:
    return {"tenants": Tenant.objects.count(),
            "definitions": WorkflowDefinition.objects.count(),
            "policies": Policy.objects.count(),
            "policy_versions": PolicyVersion.objects.count(),
            "events": AuditEvent.objects.count()}


def adm_001(tenant_slug="tenant_omega"):
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant_slug),
                                          code="FC-ADM-001").order_by("seq"))


def run_command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- bundle_load -------------------------------------------------------------------------

def test_loading_the_same_bundle_twice_changes_nothing(pt004):
    before = counts()
    for path in (PT004, "docs/examples/demo.yaml"):
        summary = bundle_load(read(path), actor="system:again", source=path)
        assert summary["tenant_created"] is False
        assert all(not item["changed"] for item in summary["workflows"] + summary["policies"])
    assert counts() == before


def test_a_first_load_creates_the_tenant_versions_and_events(db):
    summary = bundle_load(read(), actor="system:test", source=PT004)
    assert summary["tenant_created"] is True
    assert summary["workflows"] == [{"name": "pt004_execution_spine", "version": 1,
                                     "changed": True}]
    assert [(p["name"], p["version"], p["changed"]) for p in summary["policies"]] == [
        ("pt004_spend_review", 1, True), ("pt004_hard_limits", 1, True)]
    tenant = Tenant.objects.get(slug="tenant_omega")
    assert tenant.name == "Omega"
    first = adm_001()[0]
    assert first.data["version"] == 1 and first.data["previous_version"] is None
    assert first.data["rules"] == {"added": ["large-amount"], "removed": [], "changed": []}


def test_a_changed_rule_makes_a_new_policy_version_with_a_rules_diff(pt004):
    data = read()
    spend = data["policies"][0]
    spend["rules"][0]["when"] = 'step.id == "step_2" && has(input.amount) && input.amount > 5000'
    spend["rules"].append({"id": "weekend", "effect": "flag", "when": "now.getDayOfWeek() == 0",
                           "reason": "Sunday"})
    before = counts()
    summary = bundle_load(data, actor="user:priya", source="edited.yaml")
    assert [(p["name"], p["version"], p["changed"]) for p in summary["policies"]] == [
        ("pt004_spend_review", 2, True), ("pt004_hard_limits", 1, False)]
    assert summary["workflows"][0]["changed"] is False
    after = counts()
    assert after["policy_versions"] == before["policy_versions"] + 1
    assert after["definitions"] == before["definitions"]
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    assert policy.version == 2
    assert [v.version for v in policy.versions.order_by("version")] == [1, 2]
    assert "5000" in policy.versions.get(version=2).rules[0]["when"]
    assert "10000" in policy.versions.get(version=1).rules[0]["when"]  # v1 kept as it was
    event = adm_001()[-1]
    assert event.actor == "user:priya"
    assert event.data["policy"] == "pt004_spend_review"
    assert (event.data["version"], event.data["previous_version"]) == (2, 1)
    assert event.data["rules"] == {"added": ["weekend"], "removed": [],
                                   "changed": ["large-amount"]}
    assert event.data["fields_changed"] == []
    assert event.message == "Policy 'pt004_spend_review' changed to version 2"


def test_a_removed_rule_and_a_changed_tier_are_in_the_diff(pt004):
    data = read()
    limits = data["policies"][1]
    limits["tier"] = 4
    limits["rules"] = [{"id": "tiny", "effect": "deny", "when": "false"}]
    bundle_load(data, actor="user:priya")
    event = adm_001()[-1]
    assert event.data["policy"] == "pt004_hard_limits"
    assert event.data["rules"] == {"added": ["tiny"], "removed": ["over-hard-limit"],
                                   "changed": []}
    assert event.data["fields_changed"] == ["tier"]


def test_a_bundle_with_one_bad_rule_is_refused_whole(db):
    data = read()
    data["tenant"] = "tenant_new"
    data["policies"][1]["rules"].append(
        {"id": "broken", "effect": "deny", "when": "input.amount >> 3"})
    with pytest.raises(BundleError) as info:
        bundle_load(data, actor="system:test", source="bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: policy pt004_hard_limits: rule 'broken': ")
    assert message.endswith("at line 1, column 15")
    assert counts() == {"tenants": 0, "definitions": 0, "policies": 0, "policy_versions": 0,
                        "events": 0}


def test_a_bad_bundle_leaves_an_existing_tenant_untouched(pt004):
    data = read()
    data["workflows"][0]["steps"].append({"id": "step_6", "type": "external"})  # a change
    data["policies"][0]["rules"][0]["when"] = "request.amount > 0"
    before = counts()
    with pytest.raises(BundleError, match="policy pt004_spend_review: rule 'large-amount': "
                                          "unknown variable"):
        bundle_load(data, actor="system:test", source="bad.yaml")
    assert counts() == before


def test_a_fault_found_while_writing_rolls_back_what_was_written(db, monkeypatch):
    from runs import bundles

    def save_then_refuse(**kwargs):  # the second policy fails inside policy_save
        if kwargs["name"] == "pt004_hard_limits":
            raise RuleError("refused while writing")
        return policy_save(**kwargs)

    monkeypatch.setattr(bundles, "policy_save", save_then_refuse)
    data = read()
    data["tenant"] = "tenant_late"
    with pytest.raises(BundleError, match="policy pt004_hard_limits: refused while writing"):
        bundle_load(data, actor="system:test", source="late.yaml")
    assert counts()["tenants"] == 0 and counts()["definitions"] == 0


def test_a_bad_tier_is_refused_before_anything_is_written(db):
    data = read()
    data["policies"][1]["tier"] = 500
    with pytest.raises(BundleError, match="policy pt004_hard_limits: tier must be"):
        bundle_check(data, source="late.yaml")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(extra=1), "b.yaml: unknown key(s) extra"),
    (lambda d: d.pop("tenant"), "b.yaml: 'tenant' (a slug of up to 64"),
    (lambda d: d.update(tenant="a b"), "b.yaml: 'tenant' (a slug of up to 64"),
    (lambda d: d.update(workflows=True), "b.yaml: 'workflows' must be a list"),
    (lambda d: d.update(policies={"p": 1}), "b.yaml: 'policies' must be a list"),
    (lambda d: d["workflows"].append("wf"), "b.yaml: workflow #2: a workflow is a mapping"),
    (lambda d: d["policies"][0].update(tier="high"), "b.yaml: policy"),
    (lambda d: d["policies"][0].update(enabled="yes"), "b.yaml: policy"),
    (lambda d: d["workflows"][0].pop("name"), "b.yaml: workflow #1: a workflow needs a name"),
    (lambda d: d["workflows"][0]["steps"][1].update(after=["nope"]),
     "b.yaml: workflow pt004_execution_spine: step 'step_2': after names unknown step(s) nope"),
    (lambda d: d["policies"][1].pop("name"), "b.yaml: policy #2: a policy needs a name"),
    (lambda d: d["policies"][0].update(applies_to={"workflow": ["*"]}),
     "b.yaml: policy pt004_spend_review: applies_to takes"),
])
def test_bundle_faults_name_their_place(db, mutate, message):
    data = copy.deepcopy(read())
    mutate(data)
    with pytest.raises(BundleError) as info:
        bundle_load(data, actor="system:test", source="b.yaml")
    assert str(info.value).startswith(message)
    assert counts()["tenants"] == 0


# --- load_workflows ----------------------------------------------------------------------

def test_load_workflows_reports_new_and_unchanged_versions(db):
    first = run_command("load_workflows", PT004)
    assert first.splitlines() == [
        f"{PT004}: workflow pt004_execution_spine v1 (new version)",
        f"{PT004}: policy pt004_spend_review v1 (new version)",
        f"{PT004}: policy pt004_hard_limits v1 (new version)",
    ]
    second = run_command("load_workflows", PT004)
    assert second.splitlines() == [line.replace("new version", "unchanged")
                                   for line in first.splitlines()]


def test_load_workflows_reads_json_and_names_the_actor(db, tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(read()), encoding="utf-8")
    output = run_command("load_workflows", str(path), "--actor", "user:priya")
    assert f"{path}: workflow pt004_execution_spine v1 (new version)" in output
    assert {e.actor for e in AuditEvent.objects.all()} == {"user:priya"}


@pytest.mark.parametrize(("name", "text"), [
    ("broken.yaml", "tenant: [unclosed\nworkflows: {"),
    ("broken.json", '{"tenant": "x",'),
])
def test_load_workflows_refuses_unparseable_files(db, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CommandError, match=f"{path}: cannot parse"):
        run_command("load_workflows", str(path))
    assert counts()["tenants"] == 0


def test_load_workflows_refuses_a_missing_file(db, tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CommandError, match=f"{missing}: no such file"):
        run_command("load_workflows", str(missing))


def test_load_workflows_refuses_an_invalid_bundle_with_its_message(db, tmp_path):
    data = read()
    data["policies"][0]["rules"][0]["effect"] = "block"
    path = tmp_path / "invalid.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(CommandError, match=rf"{path}: policy pt004_spend_review: "
                                           r"rule 'large-amount': effect must be one of"):
        run_command("load_workflows", str(path))
    assert counts()["tenants"] == 0


# --- create_api_client -------------------------------------------------------------------

def test_create_api_client_prints_its_credentials_once(pt004):
    output = run_command("create_api_client", "--tenant", "tenant_omega", "--name", "harness",
                         "--scopes", "runs:write runs:read")
    printed = json.loads(output)
    assert set(printed) == {"kid", "secret", "tenant", "scopes"}
    assert printed["tenant"] == "tenant_omega"
    assert printed["scopes"] == "runs:read runs:write"
    client = ApiClient.objects.get(kid=printed["kid"])
    assert client.tenant == pt004 and client.active
    assert printed["secret"] and printed["secret"] not in (client.secret_salt, client.kid)
    event = AuditEvent.objects.get(stream__name=admin_stream_name("tenant_omega"),
                                   code="FC-ADM-003")
    assert event.data["kid"] == printed["kid"] and event.data["action"] == "created"
    assert printed["secret"] not in json.dumps(event.data)


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "tenant_omega", "--scopes", "runs:read runs:delete"],
     r"unknown scope\(s\) runs:delete"),
    (["--tenant", "tenant_omega", "--scopes", ""], "at least one scope"),
    (["--tenant", "tenant_nobody", "--scopes", "runs:read"], "no tenant 'tenant_nobody'"),
])
def test_create_api_client_refuses(pt004, args, message):
    with pytest.raises(CommandError, match=message):
        run_command("create_api_client", "--name", "x", *args)
    assert not ApiClient.objects.exists()


# --- add_member --------------------------------------------------------------------------

def groups_of(username):
    membership = Membership.objects.get(user__username=username)
    return sorted(g.name for g in membership.groups.all())


def test_add_member_creates_the_person_and_sets_groups(pt004):
    output = run_command("add_member", "--tenant", "tenant_omega", "--username", "zoe",
                         "--groups", "approvers,operators", "--password", "s3cret-pass")
    assert output.strip() == "zoe is a member of tenant_omega (approvers, operators)"
    user = get_user_model().objects.get(username="zoe")
    assert user.check_password("s3cret-pass")
    assert groups_of("zoe") == ["approvers", "operators"]
    run_command("add_member", "--tenant", "tenant_omega", "--username", "zoe",
                "--groups", "policy-admins")
    assert groups_of("zoe") == ["policy-admins"]  # set, not added
    assert get_user_model().objects.get(username="zoe").check_password("s3cret-pass")
    assert get_user_model().objects.filter(username="zoe").count() == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "tenant_omega", "--groups", "approvers,wizards"], r"unknown group\(s\) wizards"),
    (["--tenant", "tenant_nobody", "--groups", "approvers"], "no tenant 'tenant_nobody'"),
])
def test_add_member_refuses(pt004, args, message):
    with pytest.raises(CommandError, match=message):
        run_command("add_member", "--username", "zed", "--password", "pw-pw-pw-pw", *args)
    assert not Membership.objects.filter(user__username="zed").exists()


# --- audit_verify ------------------------------------------------------------------------

def test_audit_verify_is_ok_on_a_clean_database(pt004, advance):
    from runs.services import run_create

    with advance():
        run_create(tenant=pt004, workflow="nightly_report", input={}, actor="user:olivia")
    streams = {e.stream.name for e in AuditEvent.objects.select_related("stream")}
    events = AuditEvent.objects.count()
    output = run_command("audit_verify")
    assert output.strip() == f"{len(streams)} streams, {events} events: OK"
    report = json.loads(run_command("audit_verify", "--tenant", "tenant_omega", "--json"))
    assert report == {"ok": True, "streams": len(streams), "events": events, "failures": []}


# --- demo_seed ---------------------------------------------------------------------------

def test_demo_seed_is_idempotent(db):
    first = run_command("demo_seed")
    assert first.strip() == "demo tenant tenant_omega ready"
    tenant = Tenant.objects.get(slug="tenant_omega")
    state = {**counts(), "runs": Run.objects.count(), "users": get_user_model().objects.count(),
             "memberships": Membership.objects.count()}
    assert state["runs"] == 8  # with the worked example's archive child run
    assert groups_of("adam") == ["approvers"] and groups_of("otto") == ["approvers", "operators"]
    users = get_user_model().objects
    assert users.get(username="admin").is_superuser
    assert users.get(username="otto").has_perm("gates.override_gate")
    assert users.get(username="priya").has_perm("gates.review_override")
    assert not users.get(username="priya").has_perm("gates.override_gate")
    run_command("demo_seed")
    assert {**counts(), "runs": Run.objects.count(), "users": get_user_model().objects.count(),
            "memberships": Membership.objects.count()} == state
    assert Run.objects.for_tenant(tenant).count() == 8
    archived = Run.objects.get(tenant=tenant, definition__name="archive_flow")
    assert archived.parent_step_id == "archive"
    assert archived.input["payment"] == {"paid": 900, "bank_ref": "B-900"}
    agent = Run.objects.get(tenant=tenant, definition__name="agent_payment",
                            input={"request": "pay ACME"})
    pay = agent.steps.get(step_id="pay")  # decided on what the plan said
    assert agent.status == "paused" and pay.status == "waiting"
    assert pay.input["amount"] == 25000 and pay.input["payee"] == "ACME-4411"
