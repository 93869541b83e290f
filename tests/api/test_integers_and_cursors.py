"""Integers a client sends are bounded before they reach SQL, and a forged pagination
cursor is a 400 `bad_cursor`: never a 500, on SQLite and on PostgreSQL."""

import base64
from urllib.parse import urlencode

import pytest

from runs.models import Run

pytestmark = pytest.mark.django_db

HUGE = [2**31, 2**63, 2**64, 10**400]


def field_error(response, field: str):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and field in body["errors"], body
    return body


@pytest.mark.parametrize("number", HUGE)
def test_a_version_beyond_its_column_is_a_field_error(api, number):
    raw = '{"workflow": "pt004_execution_spine", "version": ' + str(number) + "}"
    field_error(api.call("POST", "/workflows/runs", raw=raw), "version")
    field_error(api.call("POST", "/workflows/policies/evaluate",
                         raw=raw[:-1] + ', "step_id": "step_1"}'), "version")
    assert Run.objects.count() == 0


@pytest.fixture
def run_id(api):
    return api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]


@pytest.mark.parametrize("number", HUGE)
def test_an_attempt_beyond_its_column_is_a_field_error(api, run_id, number):
    raw = '{"status": "succeeded", "attempt": ' + str(number) + "}"
    field_error(api.call("PATCH", f"/workflows/runs/{run_id}/steps/step_1", raw=raw), "attempt")


@pytest.mark.parametrize("field", ["expires_in", "required_approvals"])
@pytest.mark.parametrize("number", HUGE)
def test_gate_request_numbers_are_bounded(api, run_id, field, number):
    raw = '{"reason": "x", "' + field + '": ' + str(number) + "}"
    field_error(api.call("POST", f"/workflows/runs/{run_id}/gates", raw=raw), field)


def cursor(**tokens) -> str:
    return base64.b64encode(urlencode(tokens).encode()).decode()


FORGED = [
    "not-base64!", "xyz=", base64.b64encode(b"\xff\xfe").decode(),
    cursor(o=10**30), cursor(o=1001), cursor(o=-5), cursor(o="x"), cursor(r=7),
    cursor(p="abc"), cursor(p="2026-13-45 00:00:00"), cursor(p=str(10**30)),
    cursor(p=str(2**63)), cursor(p="1e5"), cursor(o=10**30, p="2026-01-01 00:00:00+00:00"),
]


@pytest.mark.parametrize("path", ["/workflows/runs", "/workflows/audit"])
@pytest.mark.parametrize("forged", FORGED)
def test_a_forged_cursor_is_400(api, run_id, path, forged):
    response = api.get(f"{path}?{urlencode({'cursor': forged})}")
    assert response.status_code == 400, (forged, response.content)
    body = response.json()
    assert body["code"] == "bad_cursor" and isinstance(body["detail"], str)


@pytest.mark.parametrize("path", ["/workflows/runs", "/workflows/audit"])
def test_cursors_the_api_returns_still_page(api, path):
    for amount in range(3):
        api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                     "input": {"amount": amount}})
    seen, url = [], f"{path}?limit=2"
    while url:
        page = api.get(url.replace("http://testserver", ""))
        assert page.status_code == 200, page.content
        seen += page.json()["results"]
        url = page.json()["next"]
    assert len(seen) == (3 if path == "/workflows/runs" else len(
        {(e["stream"], e["seq"]) for e in seen}))
    previous = api.get(f"{path}?limit=2").json()
    back = api.get(api.get(previous["next"].replace("http://testserver", "")).json()[
        "previous"].replace("http://testserver", ""))
    assert back.status_code == 200
