"""Who works in which tenant with which rights (`fcore.tenancy`): people who are members of
several tenants choose one per session; the console and the API ask for the same scope to
change a run's status."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from fcore.members import member_set
from fcore.tenancy import principal_for_user
from runs.models import Run, RunStatus
from runs.services import run_create

pytestmark = pytest.mark.django_db

PASSWORD = "tenancy-test-pass"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def two_tenants(pt004, other_tenant, advance):
    """mona: operator in tenant_omega (joined first) and approver in tenant_sigma; one run
    in each tenant."""
    member_set(tenant=pt004, username="mona", groups=["operators"], password=PASSWORD)
    member_set(tenant=other_tenant, username="mona", groups=["approvers"])
    runs = {}
    with advance():
        for tenant in (pt004, other_tenant):
            runs[tenant.slug], _ = run_create(tenant=tenant, workflow="pt004_execution_spine",
                                              actor="client:seed", input={"amount": 10})
    return runs


def login(username="mona") -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_a_person_works_in_their_first_tenant_unless_they_choose(two_tenants):
    mona = get_user_model().objects.get(username="mona")
    first = principal_for_user(mona)
    assert first.tenant.slug == "tenant_omega" and first.groups == {"operators"}
    assert [slug for slug, _ in first.tenants] == ["tenant_omega", "tenant_sigma"]
    chosen = principal_for_user(mona, "tenant_sigma")
    assert chosen.tenant.slug == "tenant_sigma" and chosen.groups == {"approvers"}
    assert "runs:write" not in chosen.scopes and "gates:resolve" in chosen.scopes
    assert principal_for_user(mona, "tenant_nowhere").tenant.slug == "tenant_omega"


def test_the_console_switch_changes_the_tenant_for_the_session(two_tenants):
    omega, sigma = two_tenants["tenant_omega"], two_tenants["tenant_sigma"]
    client = login()
    page = client.get("/console/runs/").content.decode()
    assert str(omega.run_id) in page and str(sigma.run_id) not in page
    assert 'action="/console/tenant"' in page and 'value="tenant_sigma"' in page
    response = client.post("/console/tenant", {"tenant": "tenant_sigma"}, follow=True)
    assert response.redirect_chain[-1][0] == "/console/"
    assert "Now working in" in response.content.decode()
    page = client.get("/console/runs/").content.decode()
    assert str(sigma.run_id) in page and str(omega.run_id) not in page
    assert client.get(f"/console/runs/{omega.run_id}/").status_code == 404
    api = client.get("/workflows/runs").json()  # the API under the same session
    assert [r["run_id"] for r in api["results"]] == [str(sigma.run_id)]


def test_a_tenant_one_is_not_a_member_of_cannot_be_chosen(two_tenants, db):
    from fcore.models import Tenant

    Tenant.objects.create(slug="tenant_tau", name="Tau")
    client = login()
    response = client.post("/console/tenant", {"tenant": "tenant_tau"}, follow=True)
    assert "You are not a member of that tenant." in response.content.decode()
    page = client.get("/console/runs/").content.decode()
    assert str(two_tenants["tenant_omega"].run_id) in page
    assert client.get("/console/tenant").status_code == 405


def test_one_tenant_shows_no_switch(pt004):
    member_set(tenant=pt004, username="solo", groups=["operators"], password=PASSWORD)
    page = login("solo").get("/console/").content.decode()
    assert 'action="/console/tenant"' not in page


def test_changing_a_run_status_needs_runs_write_in_console_and_api_alike(two_tenants):
    """mona may cancel in tenant_omega (operator) and in neither place in tenant_sigma
    (approver); a superuser member without the scope may not either."""
    sigma = two_tenants["tenant_sigma"]
    client = login()
    client.post("/console/tenant", {"tenant": "tenant_sigma"})
    console = client.post(f"/console/runs/{sigma.run_id}/cancel", {"reason": "no"}, follow=True)
    assert "Only operators may cancel a run" in console.content.decode()
    api = APIClient()
    api.force_login(get_user_model().objects.get(username="mona"))
    session = api.session
    session["fc_tenant"] = "tenant_sigma"
    session.save()
    refused = api.patch(f"/workflows/runs/{sigma.run_id}/status", {"status": "cancelled"},
                        format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert Run.objects.get(pk=sigma.pk).status == RunStatus.RUNNING

    boss = get_user_model().objects.create_superuser("boss", "b@example.invalid", PASSWORD)
    member_set(tenant=sigma.tenant, username="boss", groups=["approvers"])
    assert "/cancel" not in login("boss").get(f"/console/runs/{sigma.run_id}/").content.decode()
    api.force_login(boss)
    assert api.patch(f"/workflows/runs/{sigma.run_id}/status", {"status": "cancelled"},
                     format="json").status_code == 403

    client.post("/console/tenant", {"tenant": "tenant_omega"})
    omega = two_tenants["tenant_omega"]
    done = client.post(f"/console/runs/{omega.run_id}/cancel", {"reason": "yes"}, follow=True)
    assert "Run cancelled." in done.content.decode()
    assert Run.objects.get(pk=omega.pk).status == RunStatus.CANCELLED
