"""JSON typed into forms — the console's decide and review-link forms, admin's policy,
tenant and webhook forms — nested beyond FCORE_JSON_MAX_DEPTH or holding a lone surrogate
is a form error, never a 500, and nothing is stored."""

import json

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from fcore.models import Tenant
from gates.models import Approval, GateStatus, Policy, WebhookEndpoint
from gates.notify.links import link_token_make
from tests.gates import test_console as base
from tests.gates.test_console import decide_url, flash, login, open_gate

pytestmark = pytest.mark.django_db
tenant, make_run, fast_passwords = base.tenant, base.make_run, base.fast_passwords


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


TOO_DEEP = [json.dumps({"a": "b"})[:-1] + ', "c": ' + nested(5000) + "}",
            '{"c": ' + nested(600) + "}", '{"c": ' + nested(64) + "}"]
SURROGATE = ['{"a": "\\ud800"}', '{"\\udc00": 1}']


@pytest.mark.parametrize("raw", TOO_DEEP + SURROGATE)
def test_the_decide_form_refuses_the_input(tenant, make_run, raw):
    gate = open_gate(make_run(tenant))
    events = AuditEvent.objects.count()
    response = login("adam").post(decide_url(gate), {"decision": "approve", "input": raw})
    assert response.status_code == 302
    (message,) = flash(response)
    assert message.startswith("Input is not valid JSON:")
    assert Approval.objects.count() == 0 and AuditEvent.objects.count() == events
    gate.refresh_from_db()
    assert gate.status == GateStatus.OPEN


@pytest.mark.parametrize("raw", [TOO_DEEP[0], SURROGATE[0]])
def test_the_review_link_form_refuses_the_input(tenant, make_run, raw):
    gate = open_gate(make_run(tenant))
    adam = get_user_model().objects.get(username="adam")
    token = link_token_make(gate_id=gate.id, user_id=adam.pk)
    response = login("adam").post(f"/console/gates/{gate.id}/review",
                                  {"t": token, "decision": "approve", "input": raw})
    assert response.status_code == 200
    assert "Input is not valid JSON:" in " ".join(flash(response))
    assert Approval.objects.count() == 0


@pytest.fixture
def superuser_client(client, tenant):
    user = get_user_model().objects.create_superuser("root", password="root-pass-1234")
    client.force_login(user)
    return client


@pytest.mark.parametrize("raw", [nested(5000), nested(70), '[{"id": "\\ud800"}]'])
def test_the_policy_admin_form_refuses_the_rules(superuser_client, tenant, raw):
    before = Policy.objects.count()
    response = superuser_client.post("/admin/gates/policy/add/", {
        "tenant": str(tenant.pk), "name": "deep", "description": "", "tier": "1",
        "applies_to": json.dumps({"workflows": ["*"], "step_types": ["*"]}), "rules": raw,
        "enabled": "on", "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000"})
    assert response.status_code == 200
    assert "Enter valid JSON" in response.content.decode()
    assert Policy.objects.count() == before


@pytest.mark.parametrize("raw", [nested(5000), '{"k": "\\udfff"}'])
def test_the_tenant_admin_form_refuses_the_settings(superuser_client, tenant, raw):
    response = superuser_client.post(f"/admin/fcore/tenant/{tenant.pk}/change/", {
        "slug": tenant.slug, "name": tenant.name, "settings": raw})
    assert response.status_code == 200
    assert "Enter valid JSON" in response.content.decode()
    assert Tenant.objects.get(pk=tenant.pk).settings == tenant.settings


def test_the_tenant_admin_keeps_the_slug_once_it_exists(superuser_client, tenant):
    response = superuser_client.post(f"/admin/fcore/tenant/{tenant.pk}/change/", {
        "slug": "renamed", "name": "New name", "settings": "{}"})
    assert response.status_code == 302, response.content.decode()[:2000]
    changed = Tenant.objects.get(pk=tenant.pk)
    assert (changed.slug, changed.name) == (tenant.slug, "New name")


def test_the_webhook_admin_form_refuses_deep_events(superuser_client, tenant):
    response = superuser_client.post("/admin/gates/webhookendpoint/add/", {
        "tenant": str(tenant.pk), "name": "hook", "url": "https://hooks.example.invalid/x",
        "events": nested(5000), "active": "on"})
    assert response.status_code == 200
    assert "Enter valid JSON" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize("raw", [nested(5000), '["\\ud800"]'])
def test_the_api_client_admin_form_refuses_the_allowed_subs(superuser_client, tenant, raw):
    from fcore.models import ApiClient

    response = superuser_client.post("/admin/fcore/apiclient/add/", {
        "tenant": str(tenant.pk), "name": "bot", "scopes": "runs:read",
        "allowed_subs": raw, "active": "on"})
    assert response.status_code == 200
    assert "Enter valid JSON" in response.content.decode()
    assert not ApiClient.objects.filter(name="bot").exists()
