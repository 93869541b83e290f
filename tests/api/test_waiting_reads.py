"""Waiting reads in the web process (DESIGN §12): `GET /workflows/runs/{id}?wait_s=N&
after_seq=S` — bad parameters are a 400 with the error shape, another tenant's run a 404
without waiting, a stream already past S answers at once, an unchanged one after N
seconds. Answers across processes, while the run changes, are in
tests/ops/test_waiting_server.py."""

import time

import pytest

from fcore.clients import api_client_create
from fcore.tokens import token_mint

from .test_bad_input import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(api):
    return api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                        "input": {"amount": 5}}).json()


def test_every_read_of_a_run_gives_its_audit_seq(api, run):
    first = api.get(f"/workflows/runs/{run['run_id']}").json()
    assert first["audit_seq"] > 0
    api.patch(f"/workflows/runs/{run['run_id']}/steps/step_1", {"status": "succeeded"})
    later = api.get(f"/workflows/runs/{run['run_id']}").json()
    assert later["audit_seq"] > first["audit_seq"]
    logs = api.get(f"/workflows/runs/{run['run_id']}?include_logs=true").json()["logs"]
    assert logs[-1]["seq"] == later["audit_seq"]


@pytest.mark.parametrize("query, field", [
    ("wait_s=31&after_seq=1", "wait_s"), ("wait_s=-1&after_seq=1", "wait_s"),
    ("wait_s=soon&after_seq=1", "wait_s"), ("wait_s=3600&after_seq=1", "wait_s"),
    ("wait_s=1&after_seq=-1", "after_seq"), ("wait_s=1&after_seq=x", "after_seq"),
    ("wait_s=1", "after_seq"), ("wait_s=1&after_seq=99999999999999999999", "after_seq"),
    ("include_logs=perhaps", "include_logs"), ("wait_s=nan&after_seq=1", "wait_s"),
])
def test_bad_parameters_are_a_400(api, run, query, field):
    started = time.monotonic()
    body = assert_error(api.get(f"/workflows/runs/{run['run_id']}?{query}"), 400, "invalid")
    assert field in body["errors"]
    assert time.monotonic() - started < 5  # refused, not waited on


def test_a_stream_already_past_after_seq_answers_at_once(api, run):
    seq = api.get(f"/workflows/runs/{run['run_id']}").json()["audit_seq"]
    started = time.monotonic()
    answer = api.get(f"/workflows/runs/{run['run_id']}?wait_s=20&after_seq={seq - 1}")
    assert answer.status_code == 200 and answer.json()["audit_seq"] == seq
    assert time.monotonic() - started < 20  # did not wait the 20 s out


def test_an_unchanged_run_answers_after_wait_s(api, run):
    seq = api.get(f"/workflows/runs/{run['run_id']}").json()["audit_seq"]
    started = time.monotonic()
    answer = api.get(f"/workflows/runs/{run['run_id']}?wait_s=0.5&after_seq={seq}")
    assert time.monotonic() - started >= 0.5
    assert answer.status_code == 200
    assert answer.json()["audit_seq"] == seq
    assert answer.json()["steps"][0]["status"] == "running"


def test_another_tenants_run_is_a_404_without_waiting(api, run, other_tenant):
    client, secret = api_client_create(tenant=other_tenant, name="sigma", actor="system:test",
                                       scopes=["runs:read"])
    token = token_mint(kid=client.kid, secret=secret, sub="intruder", tenant="tenant_sigma",
                       scope="runs:read")
    for path in (f"/workflows/runs/{run['run_id']}?wait_s=10&after_seq=0",
                 f"/workflows/runs/{run['run_id']}?wait_s=10&after_seq=999",
                 "/workflows/runs/00000000-0000-0000-0000-000000000000?wait_s=10&after_seq=0"):
        started = time.monotonic()
        assert_error(api.get(path, token=token), 404, "not_found")
        assert time.monotonic() - started < 10
