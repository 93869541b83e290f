"""Django admin is tenant-scoped in one way for every page: a staff person who is not a
superuser sees, and may pick in forms, only the tenants they are a member of; another
tenant's object is absent (its page answers as for an unknown id). A superuser sees all."""

import json

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from audit.models import AuditEvent, AuditStream, AuditVerification
from audit.verifications import audit_verification_request
from fcore.clients import api_client_create
from fcore.members import member_set
from fcore.models import ApiClient, Membership, Tenant
from gates.models import Policy, WebhookEndpoint
from gates.webhook_endpoints import webhook_endpoint_create
from runs.models import Run, WorkflowDefinition
from runs.services import run_create

pytestmark = pytest.mark.django_db

# how a model of each registered admin reaches its tenant (written here, not read from the
# code under test, so the test also holds an admin that forgot to say it)
TENANT_PATHS = {Tenant: "pk", Membership: "tenant", ApiClient: "tenant",
                AuditStream: "tenant", AuditEvent: "tenant", WorkflowDefinition: "tenant",
                Run: "tenant", Policy: "tenant", WebhookEndpoint: "tenant",
                AuditVerification: "tenant"}


@pytest.fixture
def both_tenants(pt004, other_tenant, advance):
    """One API client, webhook endpoint, member, run and audit verification in each
    tenant."""
    for tenant in (pt004, other_tenant):
        api_client_create(tenant=tenant, name=f"ci-{tenant.slug}", scopes=["runs:read"],
                          actor="user:seed")
        webhook_endpoint_create(tenant=tenant, name=f"hook-{tenant.slug}",
                                url="http://127.0.0.1:9/fc", actor="user:seed")
        member_set(tenant=tenant, username=f"member-{tenant.slug}", groups=["approvers"])
        with advance():
            run_create(tenant=tenant, workflow="pt004_execution_spine", actor="client:seed",
                       input={"amount": 10})
            audit_verification_request(tenant_id=tenant.id, actor="user:seed")
    return pt004, other_tenant


def staff_of(tenant, username="stella", groups=("operators",)) -> Client:
    """A signed-in staff person, not a superuser, with every model permission, who is a
    member of `tenant` only."""
    member_set(tenant=tenant, username=username, groups=list(groups))
    user = get_user_model().objects.get(username=username)
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.all())
    client = Client()
    client.force_login(user)
    return client


def admin_url(model, name: str, *args) -> str:
    from django.urls import reverse

    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{name}", args=args)


def test_a_staff_member_sees_only_the_rows_of_their_tenants(both_tenants):
    omega, sigma = both_tenants
    client = staff_of(omega)
    for model, path in TENANT_PATHS.items():
        theirs = model.objects.filter(**{path: sigma.pk})
        ours = model.objects.filter(**{path: omega.pk})
        assert theirs.exists() and ours.exists(), model
        listing = client.get(admin_url(model, "changelist"))
        assert listing.status_code == 200, model
        page = listing.content.decode()
        assert admin_url(model, "change", ours.first().pk) in page, model
        for obj in theirs:
            assert admin_url(model, "change", obj.pk) not in page, model
            detail = client.get(admin_url(model, "change", obj.pk))
            assert (detail.status_code, detail.get("Location")) == (302, "/admin/"), model


def test_the_tenant_filter_lists_only_their_tenants(both_tenants):
    omega, sigma = both_tenants
    member_set(tenant=sigma, username="stella", groups=["approvers"])
    both = staff_of(omega).get(admin_url(ApiClient, "changelist")).content.decode()
    assert f"tenant__id__exact={omega.pk}" in both and f"tenant__id__exact={sigma.pk}" in both
    Membership.objects.filter(tenant=sigma, user__username="stella").delete()
    one = staff_of(omega).get(admin_url(ApiClient, "changelist")).content.decode()
    assert "sigma" not in one and f"tenant__id__exact={sigma.pk}" not in one


def test_a_superuser_sees_every_tenant(both_tenants, admin_client):
    omega, sigma = both_tenants
    page = admin_client.get(admin_url(ApiClient, "changelist")).content.decode()
    for tenant in (omega, sigma):
        client = ApiClient.objects.get(tenant=tenant)
        assert admin_url(ApiClient, "change", client.pk) in page


@pytest.mark.parametrize("model, data", [
    (ApiClient, {"name": "intruder", "scopes": "runs:read", "active": "on"}),
    (WebhookEndpoint, {"name": "intruder", "url": "http://127.0.0.1:9/x",
                       "events": json.dumps(["gate.opened"]), "active": "on"}),
])
def test_forms_offer_and_accept_only_their_tenants(both_tenants, model, data):
    omega, sigma = both_tenants
    client = staff_of(omega)
    form = client.get(admin_url(model, "add")).content.decode()
    assert f'<option value="{omega.pk}"' in form
    assert f'<option value="{sigma.pk}"' not in form
    refused = client.post(admin_url(model, "add"), {"tenant": sigma.pk, **data})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not model.objects.filter(name="intruder").exists()


def test_a_membership_of_another_tenant_cannot_be_created(both_tenants):
    omega, sigma = both_tenants
    client = staff_of(omega)
    newcomer = get_user_model().objects.create_user("newcomer")
    client.post(admin_url(Membership, "add"), {"tenant": sigma.pk, "user": newcomer.pk})
    assert not Membership.objects.filter(user=newcomer).exists()


def test_a_policy_admin_changes_only_the_policies_of_tenants_where_they_are_one(both_tenants):
    omega, sigma = both_tenants
    member_set(tenant=sigma, username="stella", groups=["approvers"])
    client = staff_of(omega, groups=("policy-admins",))
    ours = Policy.objects.filter(tenant=omega).first()
    theirs = Policy.objects.filter(tenant=sigma).first()
    assert client.get(admin_url(Policy, "change", ours.pk)).status_code == 200
    assert b'name="_save"' in client.get(admin_url(Policy, "change", ours.pk)).content
    # a member of sigma sees its policies, but as an approver there may not change them
    view = client.get(admin_url(Policy, "change", theirs.pk))
    assert view.status_code == 200 and b'name="_save"' not in view.content
    form = client.get(admin_url(Policy, "add")).content.decode()
    assert f'<option value="{omega.pk}"' in form
    assert f'<option value="{sigma.pk}"' not in form
    restore = client.post(admin_url(Policy, "restore", theirs.pk, 1))
    assert restore.status_code == 403


def test_every_admin_of_a_tenant_owned_model_is_tenant_scoped():
    from fcore.interfaces.admin.tenancy import TenantScopedAdmin, tenant_owned

    scoped = {model for model, model_admin in admin.site._registry.items()
              if isinstance(model_admin, TenantScopedAdmin)}
    owned = {model for model in admin.site._registry if tenant_owned(model)}
    assert owned >= set(TENANT_PATHS)
    assert owned - scoped == set()


def test_the_system_check_names_an_admin_that_is_not_scoped():
    from fcore.interfaces.admin.tenancy import check_admins_tenant_scoped

    site = admin.AdminSite(name="unscoped")
    site.register(ApiClient)
    errors = check_admins_tenant_scoped(site=site)
    assert [e.id for e in errors] == ["fcore.E001"]
    assert "fcore.ApiClient" in errors[0].msg
    assert check_admins_tenant_scoped(site=admin.site) == []
