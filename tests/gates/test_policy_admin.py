"""Policies in Django admin: validated on save, every save a version, only policy admins."""

import json

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from audit.services import admin_stream_name
from fcore.members import member_set
from gates.models import Policy, PolicyVersion

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/gates/policy/add/"
GOOD_RULES = [{"id": "big-spend", "effect": "flag", "when": "input.amount > 10000",
               "reason": "large amount", "gate": {"required_approvals": 2}}]


def form_data(tenant, *, name="spend_limits", rules=None, tier=2, applies_to=None,
              enabled=True, description="") -> dict:
    data = {
        "tenant": str(tenant.pk), "name": name, "description": description, "tier": str(tier),
        "applies_to": json.dumps(applies_to or {"workflows": ["*"], "step_types": ["*"]}),
        "rules": json.dumps(GOOD_RULES if rules is None else rules),
        # the read-only version inline's management form (ignored when it is not shown)
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    }
    if enabled:
        data["enabled"] = "on"
    return data


def change_url(policy) -> str:
    return f"/admin/gates/policy/{policy.pk}/change/"


def change_data(policy, **overrides) -> dict:
    data = form_data(policy.tenant, name=policy.name, **overrides)
    data.pop("tenant"), data.pop("name")  # read-only once the policy exists
    data["versions-TOTAL_FORMS"] = data["versions-INITIAL_FORMS"] = str(
        policy.versions.count())
    for i, version in enumerate(policy.versions.order_by("-version")):
        data[f"versions-{i}-id"] = str(version.pk)
        data[f"versions-{i}-policy"] = str(policy.pk)
    return data


def adm_events(tenant):
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug),
                                          code="FC-ADM-001").order_by("seq"))


@pytest.fixture
def staff(pt004, client):
    """Log in a staff person of the tenant with the given groups."""

    def login(username, groups):
        member_set(tenant=pt004, username=username, groups=groups, password="pw-12345678")
        user = get_user_model().objects.get(username=username)
        user.is_staff = True
        user.save()
        client.force_login(user)
        return client

    return login


def test_a_superuser_adds_a_policy_as_version_1(pt004, admin_client, admin_user):
    response = admin_client.post(ADD_URL, form_data(pt004))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = Policy.objects.get(tenant=pt004, name="spend_limits")
    assert (policy.version, policy.tier, policy.enabled) == (1, 2, True)
    assert policy.rules == GOOD_RULES
    version = PolicyVersion.objects.get(policy=policy)
    assert version.version == 1 and version.rules == GOOD_RULES
    assert version.created_by == f"user:{admin_user.username}"
    event = adm_events(pt004)[-1]
    assert event.data["policy"] == "spend_limits" and event.data["version"] == 1
    assert event.data["rules"] == {"added": ["big-spend"], "removed": [], "changed": []}
    assert event.actor == f"user:{admin_user.username}"


def test_a_superuser_edit_creates_version_2(pt004, admin_client):
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    v1_rules = policy.rules
    assert admin_client.get(change_url(policy)).status_code == 200
    new_rules = [{**v1_rules[0], "when": "input.amount > 5000"},
                 {"id": "blocked", "effect": "deny", "when": 'input.vendor == "x"'}]
    response = admin_client.post(change_url(policy), change_data(
        policy, rules=new_rules, tier=policy.tier, applies_to=policy.applies_to))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.version == 2
    assert [v.version for v in policy.versions.order_by("version")] == [1, 2]
    assert policy.versions.get(version=1).rules == v1_rules
    assert policy.versions.get(version=2).rules[0]["when"] == "input.amount > 5000"
    event = adm_events(pt004)[-1]
    assert (event.data["version"], event.data["previous_version"]) == (2, 1)
    assert event.data["rules"] == {"added": ["blocked"], "removed": [],
                                   "changed": ["large-amount"]}


def test_saving_without_a_change_makes_no_version(pt004, staff):
    client = staff("priya", ["policy-admins"])
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    before = len(adm_events(pt004))
    same = change_data(policy, rules=policy.rules, tier=policy.tier,
                       applies_to=policy.applies_to, description=policy.description)
    response = client.post(change_url(policy), same, follow=True)
    assert response.status_code == 200
    assert "Nothing changed: no new version." in response.content.decode()
    policy.refresh_from_db()
    assert policy.version == 1 and policy.versions.count() == 1
    assert len(adm_events(pt004)) == before


@pytest.mark.parametrize(("rules", "fragments"), [
    ([GOOD_RULES[0], {"id": "broken", "effect": "deny", "when": "input.amount >"}],
     ["rule &#x27;broken&#x27;: Syntax error", "at line 1, column 15"]),
    ([{"id": "multi", "effect": "deny", "when": "input.amount > 1 &&\n  (step.id == "}],
     ["rule &#x27;multi&#x27;: Syntax error", "at line 2, column 15"]),
    ([{"id": "who", "effect": "deny", "when": "request.user == 1"}],
     ["rule &#x27;who&#x27;: unknown variable(s) request"]),
    ([GOOD_RULES[0], GOOD_RULES[0]], ["rule &#x27;big-spend&#x27;: duplicate rule id"]),
])
def test_a_bad_rule_is_shown_at_its_place_and_nothing_is_saved(pt004, admin_client, rules,
                                                                 fragments):
    before = (Policy.objects.count(), PolicyVersion.objects.count(), len(adm_events(pt004)))
    response = admin_client.post(ADD_URL, form_data(pt004, rules=rules))
    assert response.status_code == 200  # the form again, with the error
    content = response.content.decode()
    for fragment in fragments:
        assert fragment in content
    assert "rules" in response.context["adminform"].form.errors
    assert (Policy.objects.count(), PolicyVersion.objects.count(),
            len(adm_events(pt004))) == before


def test_a_bad_rule_on_edit_keeps_the_current_version(pt004, staff):
    client = staff("priya", ["policy-admins"])
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    rules_before = policy.rules
    bad = [{"id": "oops", "effect": "flag", "when": "input.amount >>"}]
    response = client.post(change_url(policy), change_data(policy, rules=bad))
    assert response.status_code == 200
    assert "rule &#x27;oops&#x27;: Syntax error" in response.content.decode()
    policy.refresh_from_db()
    assert policy.version == 1 and policy.rules == rules_before
    assert policy.versions.count() == 1


def test_a_policy_admin_who_is_not_a_superuser_can_add(pt004, staff):
    client = staff("priya", ["policy-admins"])
    response = client.post(ADD_URL, form_data(pt004, name="priya_policy"))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = Policy.objects.get(tenant=pt004, name="priya_policy")
    assert policy.version == 1
    assert policy.versions.get().created_by == "user:priya"


def test_a_policy_admin_edit_creates_version_2(pt004, staff):
    client = staff("priya", ["policy-admins"])
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    assert client.get(change_url(policy)).status_code == 200
    rules = [{"id": "large-amount", "effect": "flag", "when": "input.amount > 5000"}]
    response = client.post(change_url(policy), change_data(policy, rules=rules, tier=3))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert (policy.version, policy.tier) == (2, 3)
    assert policy.versions.get(version=2).created_by == "user:priya"
    event = adm_events(pt004)[-1]
    assert event.data["fields_changed"] == ["applies_to", "tier"]
    assert event.data["rules"] == {"added": [], "removed": [], "changed": ["large-amount"]}


def test_an_approver_is_refused_the_policy_pages(pt004, staff):
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    client = staff("adam", ["approvers"])
    assert client.get(change_url(policy)).status_code == 403
    assert client.get(ADD_URL).status_code == 403
    refused = client.post(change_url(policy), change_data(policy, rules=[
        {"id": "allow-all", "effect": "allow", "when": "true"}]))
    assert refused.status_code == 403
    policy.refresh_from_db()
    assert policy.version == 1 and policy.versions.count() == 1


def test_nobody_deletes_a_policy(pt004, admin_client):
    policy = Policy.objects.get(tenant=pt004, name="pt004_spend_review")
    response = admin_client.post(f"/admin/gates/policy/{policy.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Policy.objects.filter(pk=policy.pk).exists()
