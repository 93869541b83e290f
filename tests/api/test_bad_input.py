"""Bad input answers 400 with the error shape, never 500; other tenants' objects are 404."""

import pytest

from runs.models import Run

pytestmark = pytest.mark.django_db


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body["detail"], str) and body["code"]
    if code:
        assert body["code"] == code
    return body


def test_malformed_json(api):
    response = api.call("POST", "/workflows/runs", raw='{"workflow": ')
    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize("raw", ["[]", "null", "42", '"text"'])
def test_body_that_is_not_an_object(api, raw):
    assert_error(api.call("POST", "/workflows/runs", raw=raw), 400, "invalid")


def test_unknown_workflow(api):
    body = assert_error(api.post("/workflows/runs", {"workflow": "nope"}), 400,
                        "unknown_workflow")
    assert "nope" in body["detail"]


def test_unknown_version(api):
    assert_error(api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                              "version": 99}), 400, "unknown_workflow")


@pytest.mark.parametrize("value", [[1, 2], "text", 5, None])
def test_input_that_is_not_an_object(api, value):
    body = assert_error(api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                                     "input": value}), 400, "invalid")
    assert "input" in body["errors"]
    assert Run.objects.count() == 0


def test_missing_workflow_field(api):
    body = assert_error(api.post("/workflows/runs", {"input": {}}), 400, "invalid")
    assert "workflow" in body["errors"]


@pytest.mark.parametrize("status", ["sleeping", "", None, 3, "RUNNING"])
def test_unknown_status(api, status):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    body = assert_error(api.patch(f"/workflows/runs/{run_id}/status", {"status": status}), 400,
                        "invalid")
    assert "status" in body["errors"]


def test_unknown_step_report_status(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    assert_error(api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "done"}), 400)


@pytest.mark.parametrize("body", [{"decision": "maybe"}, {}, {"decision": "approve",
                                                             "comment": 5 * "x" * 1000}])
def test_bad_votes(api, approver, body):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    assert_error(approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}", body), 400)


@pytest.mark.parametrize("body", [
    {"required_approvals": 2},
    {"reason": "x", "required_approvals": 0},
    {"reason": "x", "on_timeout": "escalate"},
    {"reason": "x", "input_schema": {"type": "nonsense"}},
    {"reason": "x", "step_id": "no_such_step"},
])
def test_bad_gate_requests(api, body):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    assert_error(api.post(f"/workflows/runs/{run_id}/gates", body), 400)
    assert api.get(f"/workflows/runs/{run_id}").json()["status"] == "running"


@pytest.mark.parametrize("path", ["/workflows/runs/not-a-uuid",
                                  "/workflows/runs/00000000-0000-0000-0000-000000000000",
                                  "/workflows/runs/00000000-0000-0000-0000-000000000000/receipt",
                                  "/workflows/nothing-here",
                                  "/workflows/runs/00000000-0000-0000-0000-000000000000/gates/1",
                                  ])
def test_unknown_objects_are_404(api, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize("gate_id", ["abc", "-1", "0", "99999999999999999999999"])
def test_unknown_gate_ids_are_404(api, gate_id):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    assert_error(api.get(path), 404, "not_found")
    assert_error(api.as_sub("x").patch(path, {"decision": "approve"}), 404, "not_found")




def test_method_not_allowed(api):
    assert_error(api.call("DELETE", "/workflows/runs"), 405, "method_not_allowed")


def test_idempotency_key_replays_the_same_run(api):
    body = {"workflow": "pt004_execution_spine", "input": {"amount": 7},
            "idempotency_key": "order-7"}
    first = api.post("/workflows/runs", body)
    again = api.post("/workflows/runs", body)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["run_id"] == again.json()["run_id"]
    assert Run.objects.count() == 1
    changed = api.post("/workflows/runs", {**body, "input": {"amount": 8}})
    assert_error(changed, 409, "idempotency_conflict")


def test_another_tenants_run_is_404_everywhere(api, other_tenant):
    from fcore.clients import api_client_create
    from fcore.tokens import token_mint

    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    client, secret = api_client_create(
        tenant=other_tenant, name="sigma", actor="system:test",
        scopes="runs:read runs:write gates:request gates:resolve audit:read".split())
    token = token_mint(kid=client.kid, secret=secret, sub="intruder", tenant="tenant_sigma",
                       scope="runs:read runs:write gates:request gates:resolve audit:read")
    base = f"/workflows/runs/{run_id}"
    for method, path, body in [
        ("GET", base, None), ("GET", f"{base}/receipt", None), ("GET", f"{base}/evidence", None),
        ("GET", f"{base}/gates", None), ("PATCH", f"{base}/status", {"status": "cancelled"}),
        ("PATCH", f"{base}/steps/step_1", {"status": "succeeded"}),
        ("POST", f"{base}/gates", {"reason": "x"}),
        ("PATCH", f"{base}/gates/1", {"decision": "approve"}),
        ("GET", f"/api/fc/runs/{run_id}", None),
    ]:
        assert_error(api.call(method, path, body, token=token), 404, "not_found")
    listed = api.call("GET", "/workflows/runs", token=token).json()
    assert listed["results"] == []
    events = api.call("GET", "/workflows/audit", token=token).json()["results"]
    assert all(not e["stream"].startswith("run/") for e in events)
    assert api.get(base).json()["status"] == "running"


def test_list_filters_and_pagination(api):
    for amount in (1, 2, 3):
        api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                     "input": {"amount": amount}})
    page = api.get("/workflows/runs?limit=2").json()
    assert len(page["results"]) == 2 and page["next"]
    rest = api.get(page["next"].replace("http://testserver", "")).json()
    assert len(rest["results"]) == 1
    assert api.get("/workflows/runs?status=completed").json()["results"] == []
    assert_error(api.get("/workflows/runs?status=bogus"), 400, "invalid")


@pytest.mark.parametrize("number", ["9007199254740993", "NaN", "Infinity", "-Infinity"])
def test_numbers_that_cannot_be_hashed_are_refused(api, number):
    raw = '{"workflow": "pt004_execution_spine", "input": {"n": ' + number + '}}'
    assert_error(api.call("POST", "/workflows/runs", raw=raw), 400)
    assert Run.objects.count() == 0


def test_unhashable_step_output_is_refused_and_nothing_is_lost(api):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    response = api.call("PATCH", f"/workflows/runs/{run_id}/steps/step_1",
                        raw='{"status": "succeeded", "output": {"big": 18446744073709551616}}')
    body = assert_error(response, 400, "invalid")
    assert "output" in body["errors"]
    assert api.get(f"/workflows/runs/{run_id}").json()["steps"][0]["status"] == "running"


@pytest.mark.parametrize("field", ['{"a": "x\\u0000y"}', '{"a\\u0000": 1}'])
def test_nul_characters_are_refused_on_every_database(api, field):
    raw = '{"workflow": "pt004_execution_spine", "input": ' + field + "}"
    body = assert_error(api.call("POST", "/workflows/runs", raw=raw), 400, "invalid")
    assert "NUL" in str(body["errors"])
    assert Run.objects.count() == 0


@pytest.mark.parametrize("field, value", [("idempotency_key", 0), ("workflow", 12),
                                          ("idempotency_key", True)])
def test_a_number_where_the_schema_says_string_is_refused(api, field, value):
    """DRF's CharField would take `0` as `"0"`; the schema says `type: string`."""
    body = {"workflow": "pt004_execution_spine", "input": {}, field: value}
    answer = assert_error(api.post("/workflows/runs", body), 400, "invalid")
    assert answer["errors"] == {field: ["Not a valid string."]}
    assert not Run.objects.exists()
