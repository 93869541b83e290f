"""Tenant isolation: every API endpoint and every console page, probed with another
tenant's ids, answers 404 and leaks nothing in lists, counts or errors."""

import pytest
from django.urls import get_resolver

from fcore.clients import api_client_create
from fcore.members import member_set
from fcore.models import Tenant
from fcore.tokens import token_mint
from gates.models import Gate
from tests.conftest import ALL_SCOPES

pytestmark = pytest.mark.django_db
PASSWORD = "isolation-pass-1"


@pytest.fixture
def omega_objects(api, approver):
    """A run of tenant_omega paused at an open gate, and one completed with a receipt."""
    paused = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{paused}/steps/step_1", {"status": "succeeded"})
    gate = Gate.objects.get(run_id=paused)
    return {"run_id": paused, "gate_id": gate.id}


@pytest.fixture
def sigma(other_tenant):
    client, secret = api_client_create(tenant=other_tenant, name="sigma", actor="system:test",
                                       scopes=ALL_SCOPES.split())
    token = token_mint(kid=client.kid, secret=secret, sub="intruder", tenant=other_tenant.slug,
                       scope=ALL_SCOPES)
    member_set(tenant=other_tenant, username="mallory", password=PASSWORD,
               groups=["approvers", "operators", "policy-admins"])
    return {"token": token, "tenant": other_tenant}


def api_routes():
    """Every API route with its path parameters (workflows/ and api/fc/)."""
    routes = []
    for prefix in ("workflows/", "api/fc/"):
        resolver = get_resolver()
        for pattern in resolver.url_patterns:
            if str(pattern.pattern) == prefix:
                for sub in pattern.url_patterns:
                    routes.append(prefix + str(sub.pattern))
    return routes


def fill(route: str, ids: dict) -> str:
    return "/" + (route.replace("<str:run_id>", ids["run_id"])
                  .replace("<str:gate_id>", str(ids["gate_id"]))
                  .replace("<int:gate_id>", str(ids["gate_id"]))
                  .replace("<str:step_id>", "step_1"))


def test_every_api_route_is_probed():
    routes = api_routes()
    assert len([r for r in routes if "<str:run_id>" in r]) >= 10


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_api_routes_with_another_tenants_ids_are_404(api, omega_objects, sigma, method):
    for route in api_routes():
        if "<" not in route:
            continue
        path = fill(route, omega_objects)
        response = api.call(method, path, None if method == "GET" else {}, token=sigma["token"])
        if response.status_code == 405:
            continue  # that method does not exist there
        if route.endswith(("/override", "/override/review")) and response.status_code == 403:
            assert response.json()["code"] == "forbidden"  # machines never override
            continue                                        # or review, whatever the id
        assert response.status_code in (400, 404), (method, path, response.status_code)
        if response.status_code == 400:  # input checked first: nothing about the run yet
            assert omega_objects["run_id"] not in response.content.decode()
        else:
            assert response.json() == {"code": "not_found", "detail": response.json()["detail"]}
    # nothing moved
    assert api.get(f"/workflows/runs/{omega_objects['run_id']}").json()["status"] == "paused"


def test_api_lists_and_counts_leak_nothing(api, omega_objects, sigma):
    headers = {"token": sigma["token"]}
    assert api.call("GET", "/workflows/runs", **headers).json()["results"] == []
    events = api.call("GET", "/workflows/audit", **headers).json()["results"]
    assert all(omega_objects["run_id"] not in e["stream"] for e in events)
    assert all(e["stream"].startswith("tenant/tenant_sigma") for e in events)
    report = api.call("GET", "/workflows/audit/verify", **headers).json()
    own = api.get("/workflows/audit/verify").json()
    assert report["events"] < own["events"]
    evaluated = api.call("POST", "/workflows/policies/evaluate",
                         {"workflow": "vendor_payment", "step_id": "validate"}, **headers)
    assert evaluated.status_code == 400  # sigma has no such workflow: omega's is invisible


def console_routes():
    resolver = get_resolver()
    for pattern in resolver.url_patterns:
        if str(pattern.pattern) == "console/":
            return ["console/" + str(sub.pattern) for sub in pattern.url_patterns]
    return []


def test_console_pages_with_another_tenants_ids_are_404(client, omega_objects, sigma):
    assert client.login(username="mallory", password=PASSWORD)
    probed = 0
    for route in console_routes():
        if "<" not in route:
            continue
        path = fill(route, omega_objects)
        for method in ("get", "post"):
            response = getattr(client, method)(path, {"decision": "approve",
                                                       "comment": "x", "justification": "x"})
            if response.status_code == 405:
                continue
            probed += 1
            assert response.status_code == 404, (method, path, response.status_code)
            assert omega_objects["run_id"] not in response.content.decode() or \
                path.endswith(f"{omega_objects['run_id']}/")  # only echoes the URL
    assert probed >= 5
    assert Gate.objects.get(pk=omega_objects["gate_id"]).status == "open"


def test_console_lists_show_nothing_of_another_tenant(client, omega_objects, sigma):
    assert client.login(username="mallory", password=PASSWORD)
    queue = client.get("/console/").content.decode()
    assert f"gate-{omega_objects['gate_id']}" not in queue
    runs = client.get("/console/runs/").content.decode()
    assert omega_objects["run_id"] not in runs
    audit = client.get("/console/audit/", {"per": 100}).content.decode()
    assert omega_objects["run_id"] not in audit and "tenant_omega" not in audit
    chain = client.get("/console/audit/", {"run": omega_objects["run_id"]}).content.decode()
    assert 'class="event-card"' not in chain and 'class="chain' not in chain
    bulk = client.post("/console/gates/bulk", {"gates": [omega_objects["gate_id"]],
                                               "decision": "approve"}, follow=True)
    assert f"1 refused: not_found (gate {omega_objects['gate_id']})" in bulk.content.decode()
    assert Gate.objects.get(pk=omega_objects["gate_id"]).status == "open"
    assert not Gate.objects.get(pk=omega_objects["gate_id"]).approvals.exists()
    assert Tenant.objects.count() == 2
