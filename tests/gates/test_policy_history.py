"""Policy history in admin: versions side by side with their diff, restore (POST, a new
version and FC-ADM-001), and simulation of the edited form against recorded decisions
without saving anything. Only policy admins and superusers."""

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from audit.services import admin_stream_name
from fcore.members import member_set
from gates.models import Policy, PolicyDecision, PolicyVersion
from gates.policies import policy_save, spec_changes, spec_diff_table, spec_unified_diff

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/gates/policy/add/"
SPEND = "pt004_spend_review"


def spend_policy(tenant) -> Policy:
    return Policy.objects.get(tenant=tenant, name=SPEND)


def versions_url(policy) -> str:
    return f"/admin/gates/policy/{policy.pk}/versions/"


def restore_url(policy, version) -> str:
    return f"/admin/gates/policy/{policy.pk}/versions/{version}/restore/"


def change_url(policy) -> str:
    return f"/admin/gates/policy/{policy.pk}/change/"


def adm_events(tenant):
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug),
                                          code="FC-ADM-001").order_by("seq"))


def with_threshold(policy, threshold: int) -> list[dict]:
    """The policy's rules with the flag threshold (10000 in PT-004) changed."""
    rule = policy.rules[0]
    return [{**rule, "when": rule["when"].replace("10000", str(threshold))}]


def save_v2(policy, threshold=5000) -> Policy:
    saved, changed = policy_save(
        tenant=policy.tenant, name=policy.name, rules=with_threshold(policy, threshold),
        tier=policy.tier, applies_to=policy.applies_to, enabled=True, actor="user:priya")
    assert changed and saved.version == 2
    return saved


def form_fields(policy, *, rules=None, tier=None, enabled=True, limit=None) -> dict:
    """The change form of `policy` as posted with "Simulate" (the version inline's
    management form included, as the browser sends it)."""
    data = {
        "description": policy.description, "tier": str(policy.tier if tier is None else tier),
        "applies_to": json.dumps(policy.applies_to),
        "rules": json.dumps(policy.rules if rules is None else rules),
        "_simulate": "Simulate",
        "versions-TOTAL_FORMS": str(policy.versions.count()),
        "versions-INITIAL_FORMS": str(policy.versions.count()),
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    }
    for i, version in enumerate(policy.versions.order_by("-version")):
        data[f"versions-{i}-id"] = str(version.pk)
        data[f"versions-{i}-policy"] = str(policy.pk)
    if enabled:
        data["enabled"] = "on"
    if limit is not None:
        data["_simulate_limit"] = str(limit)
    return data


def state(tenant) -> tuple:
    """Everything a simulation must leave alone."""
    return (list(Policy.objects.order_by("pk").values_list("pk", "version", "rules", "tier",
                                                           "enabled")),
            PolicyVersion.objects.count(), AuditEvent.objects.count(),
            LogEntry.objects.count(), PolicyDecision.objects.count())


@pytest.fixture
def staff(pt004, client):
    """Log in a staff person of the tenant with the given groups."""

    def login(username, groups, tenant=None):
        member_set(tenant=tenant or pt004, username=username, groups=groups,
                   password="pw-12345678")
        user = get_user_model().objects.get(username=username)
        user.is_staff = True
        user.save()
        client.force_login(user)
        return client

    return login


@pytest.fixture
def history(api):
    """Recorded decisions: step_1 allow for each run; step_2 allow (500), flag (25000) and
    deny (5000000)."""
    for amount in (500, 25000, 5_000_000):
        run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                              "input": {"amount": amount}}).json()["run_id"]
        api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    decisions = sorted((d.step_run.step_id, d.context["input"]["amount"], d.decision)
                       for d in PolicyDecision.objects.select_related("step_run"))
    assert decisions == [("step_1", 500, "allow"), ("step_1", 25000, "allow"),
                         ("step_1", 5_000_000, "allow"), ("step_2", 500, "allow"),
                         ("step_2", 25000, "flag"), ("step_2", 5_000_000, "deny")]
    return api.tenant


# --- the pure part ---------------------------------------------------------------------------

def test_spec_changes_and_unified_diff(pt004):
    policy = spend_policy(pt004)
    save_v2(policy)
    v1, v2 = policy.versions.get(version=1), policy.versions.get(version=2)
    assert spec_changes(v1, v2) == {"fields_changed": [],
                                    "rules": {"added": [], "removed": [],
                                              "changed": ["large-amount"]}}
    diff = spec_unified_diff(v1, v2)
    assert diff.startswith("--- version 1\n+++ version 2\n")
    assert "-      \"when\": \"step.id == \\\"step_2\\\" && has(input.amount) && " \
           "input.amount > 10000\"," in diff
    assert "+      \"when\": \"step.id == \\\"step_2\\\" && has(input.amount) && " \
           "input.amount > 5000\"," in diff


def test_the_diff_table_escapes_what_a_rule_says(pt004):
    policy = spend_policy(pt004)
    evil = [{"id": "x", "effect": "flag", "when": "true",
             "reason": "<script>alert('x')</script> & \u0001\u0002 <b>"}]
    policy_save(tenant=pt004, name=SPEND, rules=evil, tier=2, applies_to=policy.applies_to,
                actor="user:priya")
    table = spec_diff_table(policy.versions.get(version=1), policy.versions.get(version=2))
    assert "<script>" not in table and "<b>" not in table
    assert "&lt;script&gt;alert('x')&lt;/script&gt;&nbsp;&amp;" in table
    assert "\\u0001\\u0002" in table  # control characters stay JSON escapes, not markers


# --- the versions page -----------------------------------------------------------------------

def test_versions_page_shows_every_version_and_the_diff_of_the_last_two(pt004, admin_client):
    policy = save_v2(spend_policy(pt004))
    response = admin_client.get(versions_url(policy))
    assert response.status_code == 200
    assert [v.version for v in response.context["versions"]] == [2, 1]
    assert (response.context["old"].version, response.context["new"].version) == (1, 2)
    content = response.content.decode()
    assert "user:priya" in content and "system:test" in content  # who made each version
    assert "Restore version 1" in content and "Restore version 2" not in content
    diff = str(response.context["diff_table"])
    # the changed rule, the changed characters marked on each side (the long line wraps)
    assert "large-amount" in diff and "input.amount" in diff
    assert '&gt;&nbsp;<span class="diff_chg">10</span>000",' in diff
    assert '&gt;&nbsp;<span class="diff_chg">5</span>000",' in diff
    assert diff in content
    assert response.context["changes"]["rules"]["changed"] == ["large-amount"]


def test_versions_page_compares_the_versions_asked_for(pt004, admin_client):
    policy = save_v2(spend_policy(pt004))
    policy_save(tenant=pt004, name=SPEND, rules=with_threshold(policy, 7000), tier=2,
                applies_to=policy.applies_to, enabled=False, actor="user:olivia")
    response = admin_client.get(versions_url(policy) + "?a=1&b=3")
    assert (response.context["old"].version, response.context["new"].version) == (1, 3)
    assert response.context["changes"]["fields_changed"] == ["enabled"]
    fallback = admin_client.get(versions_url(policy) + "?a=99&b=x")
    assert (fallback.context["old"].version, fallback.context["new"].version) == (2, 3)


def test_the_change_form_links_to_versions_and_offers_simulate(pt004, admin_client):
    policy = spend_policy(pt004)
    content = admin_client.get(change_url(policy)).content.decode()
    assert f'href="{versions_url(policy)}"' in content
    assert 'name="_simulate"' in content and 'name="_simulate_limit"' in content


# --- restore ---------------------------------------------------------------------------------

def test_restore_makes_the_old_version_a_new_one(pt004, staff):
    client = staff("priya", ["policy-admins"])
    policy = save_v2(spend_policy(pt004))
    v1 = policy.versions.get(version=1)
    events = len(adm_events(pt004))
    response = client.post(restore_url(policy, 1), follow=True)
    assert response.redirect_chain[-1] == (versions_url(policy), 302)
    assert "Version 1 restored: it is now version 3." in response.content.decode()
    policy.refresh_from_db()
    v3 = policy.versions.get(version=3)
    assert policy.version == 3 and policy.rules == v1.rules
    assert (v3.rules, v3.tier, v3.applies_to, v3.enabled, v3.spec_hash) == (
        v1.rules, v1.tier, v1.applies_to, v1.enabled, v1.spec_hash)
    assert v3.created_by == "user:priya"
    assert policy.versions.get(version=2).rules != v1.rules  # versions stay as they were
    new_events = adm_events(pt004)[events:]
    assert len(new_events) == 1
    event = new_events[0]
    assert event.actor == "user:priya"
    assert (event.data["version"], event.data["previous_version"]) == (3, 2)
    assert event.data["rules"] == {"added": [], "removed": [], "changed": ["large-amount"]}


def test_restoring_what_is_current_changes_nothing(pt004, admin_client):
    policy = save_v2(spend_policy(pt004))
    policy_save(tenant=pt004, name=SPEND, rules=policy.versions.get(version=1).rules, tier=2,
                applies_to=policy.applies_to, actor="user:priya")  # v3 == v1
    before = state(pt004)
    response = admin_client.post(restore_url(policy, 1), follow=True)
    assert "Version 1 is the same as the current version 3: nothing changed." in (
        response.content.decode())
    assert state(pt004) == before


def test_restoring_a_version_that_does_not_exist(pt004, admin_client):
    policy = spend_policy(pt004)
    before = state(pt004)
    response = admin_client.post(restore_url(policy, 9), follow=True)
    assert "Version 9 cannot be restored" in response.content.decode()
    assert state(pt004) == before


def test_get_on_restore_changes_nothing(pt004, admin_client):
    policy = save_v2(spend_policy(pt004))
    before = state(pt004)
    assert admin_client.get(restore_url(policy, 1)).status_code == 405
    assert state(pt004) == before


def test_restore_needs_the_csrf_token(pt004, admin_user):
    from django.test import Client

    policy = save_v2(spend_policy(pt004))
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = state(pt004)
    assert client.post(restore_url(policy, 1)).status_code == 403
    assert state(pt004) == before


# --- simulate --------------------------------------------------------------------------------

def test_lowering_the_threshold_turns_allow_into_flag_and_saves_nothing(history, pt004,
                                                                        staff):
    client = staff("priya", ["policy-admins"])
    policy = spend_policy(pt004)
    before = state(pt004)
    response = client.post(change_url(policy),
                           form_fields(policy, rules=with_threshold(policy, 100)))
    assert response.status_code == 200
    simulation = response.context["simulation"]
    report = simulation["report"]
    assert (simulation["limit"], report["evaluated"], report["changed"]) == (1000, 6, 1)
    assert report["transitions"] == {"allow→flag": 1}
    [example] = report["examples"]
    run_500 = PolicyDecision.objects.get(step_run__step_id="step_2",
                                         decision="allow").step_run.run
    assert example["run_id"] == str(run_500.run_id) and example["step_id"] == "step_2"
    assert example["was"] == {"decision": "allow", "reason": "no rule fired"}
    assert example["would_be"]["decision"] == "flag"
    assert [r["rule"] for r in example["would_be"]["rules_triggered"]] == ["large-amount"]
    content = response.content.decode()
    assert f'href="/console/runs/{run_500.run_id}/"' in content
    assert "allow→flag" in content and "Simulation (not saved)" in content
    assert "Please correct the error" not in content
    # the edited rules are still in the form, for saving as usual
    assert "input.amount &gt; 100" in content
    assert state(pt004) == before


@pytest.mark.parametrize(("edit", "transitions"), [
    ({"rules": "same"}, {}),
    ({"enabled": False}, {"flag→allow": 1}),
    ({"rules": "deny-over-20000"}, {"flag→deny": 1}),
    ({"rules": "threshold-30000"}, {"flag→allow": 1}),
])
def test_simulation_counts_per_transition(history, pt004, admin_client, edit, transitions):
    policy = spend_policy(pt004)
    rules = {
        "same": policy.rules,
        "deny-over-20000": policy.rules + [
            {"id": "too-much", "effect": "deny", "reason": "over 20000",
             "when": 'step.id == "step_2" && input.amount > 20000'}],
        "threshold-30000": with_threshold(policy, 30000),
    }.get(edit.get("rules", "same"))
    before = state(pt004)
    response = admin_client.post(change_url(policy), form_fields(
        policy, rules=rules, enabled=edit.get("enabled", True)))
    report = response.context["simulation"]["report"]
    assert report["evaluated"] == 6
    assert report["transitions"] == transitions
    assert report["changed"] == sum(transitions.values())
    assert state(pt004) == before


def test_simulation_takes_the_last_n_decisions(history, pt004, admin_client):
    policy = spend_policy(pt004)
    response = admin_client.post(change_url(policy), form_fields(
        policy, rules=with_threshold(policy, 100), limit=2))
    simulation = response.context["simulation"]
    # the last two decisions are those of the 5,000,000 run: nothing changes there
    assert simulation["limit"] == 2
    assert (simulation["report"]["evaluated"], simulation["report"]["changed"]) == (2, 0)


@pytest.mark.parametrize("limit", ["0", "abc", "10001"])
def test_a_bad_n_is_refused(history, pt004, admin_client, limit):
    policy = spend_policy(pt004)
    data = form_fields(policy)
    data["_simulate_limit"] = limit
    response = admin_client.post(change_url(policy), data)
    assert response.status_code == 200
    assert "report" not in response.context["simulation"]
    assert "N must be a whole number from 1 to 10000." in response.content.decode()


def test_simulating_a_new_policy_from_the_add_form(history, pt004, admin_client):
    before = state(pt004)
    data = {
        "tenant": str(pt004.pk), "name": "new_guard", "description": "", "tier": "5",
        "applies_to": json.dumps({"workflows": ["pt004_*"], "step_types": ["*"]}),
        "rules": json.dumps([{"id": "cap", "effect": "deny", "reason": "cap 1000",
                              "when": 'step.id == "step_2" && input.amount > 1000'}]),
        "enabled": "on", "_simulate": "Simulate",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    }
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 200
    report = response.context["simulation"]["report"]
    assert (report["evaluated"], report["transitions"]) == (6, {"flag→deny": 1})
    assert report["examples"][0]["would_be"]["reason"] == "cap 1000"
    assert state(pt004) == before
    assert not Policy.objects.filter(name="new_guard").exists()
    # the same form saved as usual creates it
    del data["_simulate"]
    assert admin_client.post(ADD_URL, data).status_code == 302
    assert Policy.objects.get(name="new_guard").version == 1


@pytest.mark.parametrize(("rules", "fragments"), [
    ([{"id": "broken", "effect": "deny", "when": "input.amount >"}],
     ["rule &#x27;broken&#x27;: Syntax error", "at line 1, column 15"]),
    ([{"id": "multi", "effect": "flag", "when": "input.amount > 1 &&\n  (step.id == "}],
     ["rule &#x27;multi&#x27;: Syntax error", "at line 2, column 15"]),
    ([{"id": "loop", "effect": "flag", "when": "[1, 2].all(x, x > 0)"}],
     ["rule &#x27;loop&#x27;: comprehension macros are not allowed"]),
])
def test_a_bad_rule_in_simulate_is_shown_with_its_position(history, pt004, admin_client,
                                                           rules, fragments):
    policy = spend_policy(pt004)
    before = state(pt004)
    response = admin_client.post(change_url(policy), form_fields(policy, rules=rules))
    assert response.status_code == 200
    content = response.content.decode()
    for fragment in fragments:
        assert fragment in content
    assert "rules" in response.context["adminform"].form.errors
    assert "report" not in response.context["simulation"]
    assert "Correct the errors below to simulate." in content
    assert state(pt004) == before


def test_a_tier_out_of_range_is_a_form_error(pt004, admin_client):
    policy = spend_policy(pt004)
    data = form_fields(policy, tier=101)
    response = admin_client.post(change_url(policy), data)
    assert "tier must be an integer from 0 to 100" in response.content.decode()
    del data["_simulate"]
    response = admin_client.post(change_url(policy), data)  # a save: the form, not a 500
    assert response.status_code == 200
    assert "tier must be an integer from 0 to 100" in response.content.decode()
    assert spend_policy(pt004).version == 1


def test_without_decisions_the_simulation_says_so(pt004, admin_client):
    policy = spend_policy(pt004)
    response = admin_client.post(change_url(policy), form_fields(policy))
    assert response.context["simulation"]["report"]["evaluated"] == 0
    assert "no recorded decisions" in response.content.decode()


# --- who may -------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [["approvers"], ["operators", "auditors"]])
def test_staff_who_are_not_policy_admins_get_403(history, pt004, staff, groups):
    policy = save_v2(spend_policy(pt004))
    client = staff("adam", groups)
    before = state(pt004)
    assert client.get(versions_url(policy)).status_code == 403
    assert client.post(restore_url(policy, 1)).status_code == 403
    assert client.get(restore_url(policy, 1)).status_code == 403
    assert client.post(change_url(policy), form_fields(
        policy, rules=with_threshold(policy, 100))).status_code == 403
    assert client.post(ADD_URL, {"_simulate": "Simulate"}).status_code == 403
    assert state(pt004) == before


def test_a_policy_admin_sees_only_the_policies_of_their_tenant(pt004, other_tenant, staff):
    client = staff("priya", ["policy-admins"])
    theirs = Policy.objects.get(tenant=other_tenant, name=SPEND)
    policy_save(tenant=other_tenant, name=SPEND, rules=with_threshold(theirs, 1), tier=2,
                applies_to=theirs.applies_to, actor="user:sam")
    before = state(pt004)
    assert client.get(versions_url(theirs)).status_code == 404
    assert client.post(restore_url(theirs, 1)).status_code == 404
    assert client.get(versions_url(spend_policy(pt004))).status_code == 200
    changelist = client.get("/admin/gates/policy/")
    assert {p.tenant_id for p in changelist.context["cl"].result_list} == {pt004.pk}
    add_form = client.get(ADD_URL).context["adminform"].form
    assert list(add_form.fields["tenant"].queryset) == [pt004]
    assert state(pt004) == before
