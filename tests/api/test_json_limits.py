"""JSON the server parses or stores: nesting beyond FCORE_JSON_MAX_DEPTH and lone surrogates
are a 400 on every endpoint, never a 500, and nothing of them is stored."""

import pytest

from audit.models import AuditEvent
from gates.models import Approval
from runs.models import Run

pytestmark = pytest.mark.django_db


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def assert_refused(response, code="malformed_request"):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code and isinstance(body["detail"], str)
    return body


@pytest.fixture
def run_id(api):
    return api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                        "input": {"amount": 25000}}).json()["run_id"]


@pytest.fixture
def gate_id(api, run_id):
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    return api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]


def test_a_body_nested_5000_deep_is_400_on_every_json_endpoint(api, approver, run_id,
                                                                gate_id):
    deep = nested(5000)
    for method, path, body in [
        ("POST", "/workflows/runs", '{"workflow": "pt004_execution_spine", "input": {"a": DEEP}}'),
        ("POST", "/api/fc/runs", '{"workflow": "pt004_execution_spine", "input": {"a": DEEP}}'),
        ("PATCH", f"/workflows/runs/{run_id}/status", '{"status": "paused", "reason": DEEP}'),
        ("PATCH", f"/api/fc/runs/{run_id}", '{"status": "paused", "x": DEEP}'),
        ("PATCH", f"/workflows/runs/{run_id}/steps/step_2",
         '{"status": "succeeded", "output": DEEP}'),
        ("POST", f"/workflows/runs/{run_id}/gates", '{"reason": "x", "input_schema": DEEP}'),
        ("POST", "/workflows/policies/evaluate",
         '{"workflow": "pt004_execution_spine", "step_id": "step_1", "input": DEEP}'),
    ]:
        body = assert_refused(api.call(method, path, raw=body.replace("DEEP", deep)))
        assert "nested deeper than 64 levels" in body["detail"], (path, body)
    vote = '{"decision": "approve", "input": ' + deep + "}"
    assert_refused(approver.call("PATCH", f"/workflows/runs/{run_id}/gates/{gate_id}", raw=vote))
    assert Run.objects.count() == 1


@pytest.mark.parametrize("depth", [65, 600])
def test_a_vote_input_nested_too_deep_is_refused_and_not_stored(api, approver, run_id, gate_id,
                                                                depth):
    events = AuditEvent.objects.count()
    response = approver.call("PATCH", f"/workflows/runs/{run_id}/gates/{gate_id}",
                             raw='{"decision": "approve", "input": ' + nested(depth - 1) + "}")
    assert_refused(response)
    assert Approval.objects.count() == 0 and AuditEvent.objects.count() == events
    assert api.get("/workflows/audit/verify").json()["ok"] is True


def test_the_limit_is_the_setting(api, settings):
    settings.FCORE_JSON_MAX_DEPTH = 8
    raw = '{"workflow": "pt004_execution_spine", "input": {"a": %s}}'
    assert api.call("POST", "/workflows/runs", raw=raw % nested(6)).status_code == 201
    body = assert_refused(api.call("POST", "/workflows/runs", raw=raw % nested(7)))
    assert "nested deeper than 8 levels" in body["detail"]


@pytest.mark.parametrize("field", ['{"a": "x\\ud800y"}', '{"\\udfff": 1}',
                                   '{"a": ["\\ud83d"]}'])
def test_a_lone_surrogate_is_refused(api, field):
    raw = '{"workflow": "pt004_execution_spine", "input": ' + field + "}"
    body = assert_refused(api.call("POST", "/workflows/runs", raw=raw))
    assert "lone surrogate" in body["detail"]
    assert Run.objects.count() == 0


def test_a_lone_surrogate_in_a_string_field_is_refused(api, run_id):
    response = api.call("PATCH", f"/workflows/runs/{run_id}/status",
                        raw='{"status": "paused", "reason": "\\ud800"}')
    assert_refused(response)
    assert api.get(f"/workflows/runs/{run_id}").json()["status"] == "running"


def test_a_surrogate_pair_is_a_character_and_accepted(api):
    raw = '{"workflow": "pt004_execution_spine", "input": {"clef": "\\ud834\\udd1e"}}'
    response = api.call("POST", "/workflows/runs", raw=raw)
    assert response.status_code == 201, response.content
    assert response.json()["input"] == {"clef": "𝄞"}
