"""A flag rule's `gate` block is validated value by value wherever a policy is saved
(policy_save, the admin form, bundles), with the one validator of gate blocks; and
evaluation fails closed on a block that is unusable anyway (stored before the check)."""

import json

import pytest

from gates.models import Policy, PolicyVersion
from gates.policies import PolicySnapshot, RuleError, evaluate, policy_save
from runs.bundles import BundleError, bundle_load

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/gates/policy/add/"


def flag_rule(gate) -> dict:
    return {"id": "two-people", "effect": "flag", "when": "input.amount > 10", "gate": gate}


BAD_BLOCKS = [
    ({"required_approvals": "two"}, "gate.required_approvals: an integer from 1 to 20"),
    ({"required_approvals": 2.0}, "gate.required_approvals: an integer from 1 to 20"),
    ({"required_approvals": 0}, "gate.required_approvals: an integer from 1 to 20"),
    ({"approver_group": 7}, "gate.approver_group: a group name"),
    ({"approver_group": "g" * 151}, "gate.approver_group: a group name"),
    ({"expires_in": "1d"}, "gate.expires_in: seconds from 1 to"),
    ({"on_timeout": "approve"}, "gate.on_timeout: reject or escalate"),
    ({"on_timeout": "escalate"}, "gate.escalate_to: required when on_timeout is escalate"),
    ({"input_schema": {"$ref": "http://127.0.0.1:9/x"}}, "gate.input_schema: "),
    ({"required_approvals": 2, "quorum": 3}, "gate.quorum: unknown setting"),
]


@pytest.mark.parametrize(("gate", "message"), BAD_BLOCKS)
def test_policy_save_refuses_a_bad_gate_value_naming_the_rule_and_the_key(pt004, gate,
                                                                             message):
    with pytest.raises(RuleError) as info:
        policy_save(tenant=pt004, name="gated", rules=[flag_rule(gate)], actor="system:test")
    assert str(info.value).startswith(f"rule 'two-people': {message}")
    assert info.value.rule_id == "two-people"
    assert not Policy.objects.filter(tenant=pt004, name="gated").exists()


def test_a_gate_block_that_is_not_an_object_is_refused(pt004):
    with pytest.raises(RuleError, match="rule 'two-people': 'gate' is an object"):
        policy_save(tenant=pt004, name="gated", rules=[flag_rule(["two"])],
                    actor="system:test")


def test_a_good_gate_block_is_stored_as_given(pt004):
    gate = {"required_approvals": 2, "approver_group": "finance"}
    policy, _ = policy_save(tenant=pt004, name="gated", rules=[flag_rule(gate)],
                            actor="system:test")
    assert policy.rules[0]["gate"] == gate  # not filled with defaults: the step's win


def test_the_admin_form_shows_a_bad_gate_value_at_the_rules_field(pt004, admin_client):
    before = (Policy.objects.count(), PolicyVersion.objects.count())
    response = admin_client.post(ADD_URL, {
        "tenant": str(pt004.pk), "name": "gated", "description": "", "tier": "2",
        "applies_to": json.dumps({"workflows": ["*"], "step_types": ["*"]}),
        "rules": json.dumps([flag_rule({"required_approvals": "two"})]), "enabled": "on",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["rules"]
    assert errors == ["rule 'two-people': gate.required_approvals: an integer from 1 to 20"]
    assert (Policy.objects.count(), PolicyVersion.objects.count()) == before


def test_a_bundle_with_a_bad_gate_value_is_refused_naming_policy_rule_and_key(db):
    bundle = {"tenant": "tenant_new", "policies": [
        {"name": "gated", "rules": [flag_rule({"required_approvals": "two"})]}]}
    with pytest.raises(BundleError) as info:
        bundle_load(bundle, actor="system:test", source="b.yaml")
    assert str(info.value) == ("b.yaml: policy gated: rule 'two-people': "
                               "gate.required_approvals: an integer from 1 to 20")


# --- evaluation of rules stored before the check ------------------------------------------

def snapshot(*rules) -> PolicySnapshot:
    return PolicySnapshot(policy_id=1, name="stored", version=1, tier=1,
                          applies_to={"workflows": ["*"], "step_types": ["*"]}, rules=rules)


CONTEXT = {"input": {"amount": 50}}


@pytest.mark.parametrize("gate", [block for block, _ in BAD_BLOCKS] + [["two"], "two"])
def test_a_stored_flag_rule_with_an_unusable_gate_block_denies(gate):
    decision = evaluate([snapshot(flag_rule(gate))], CONTEXT)
    assert decision.decision == "deny" and decision.gate == {}
    assert decision.reason.startswith("policy_error: stored/two-people: gate settings: ")


def test_a_stored_flag_rule_with_an_unusable_gate_block_that_does_not_fire_allows():
    decision = evaluate([snapshot({**flag_rule({"required_approvals": "two"}),
                                   "when": "input.amount > 100"})], CONTEXT)
    assert decision.decision == "allow"


@pytest.mark.parametrize("rule", [
    {"id": "r", "effect": "maybe", "when": "true"},
    {"id": "r", "effect": "deny", "when": ["true"]},
    {"id": "r", "effect": "flag", "when": 7},
    {"effect": "flag", "when": "true"},
    "not a rule",
])
def test_any_stored_rule_that_cannot_be_evaluated_denies_instead_of_raising(rule):
    decision = evaluate([snapshot(rule)], CONTEXT)
    assert decision.decision == "deny"
    assert decision.reason.startswith("policy_error: ")
