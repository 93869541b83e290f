"""`fcore.interfaces.client` against an `httpx.MockTransport`, and the pure checks of
`fcore.interfaces.proof`.

No server and no database: the transport records what the client sends and answers what
the test says. The chain and receipt checks are cross-checked against the server's own
hashing functions (`audit.hashing`, `runs.receipts`).
"""

import asyncio
import hmac
import json

import httpx
import pytest

from audit.hashing import GENESIS_HASH, event_hash
from fcore.interfaces import client as client_module
from fcore.interfaces.client import (
    DEFAULT_SCOPE,
    AsyncFCClient,
    FCClient,
    FCError,
    FCTransportError,
    WaitTimeout,
)
from fcore.interfaces.proof import chain_check, receipts_check, status_transitions
from fcore.tokens import TOKEN_PREFIX, b64url_decode, token_sign
from runs.receipts import receipt_hash, workflow_hash

BASE = "http://fc.test"
KID, SECRET, TENANT = "kid_test", "s3cret-value", "tenant_omega"


class Recorder:
    """A MockTransport handler that records requests and replays queued answers."""

    def __init__(self, *answers):
        self.requests: list[httpx.Request] = []
        self.answers = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(200, json={})
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make(recorder: Recorder, cls=FCClient, sub="harness", **kwargs):
    return cls(BASE, KID, SECRET, TENANT, sub, transport=httpx.MockTransport(recorder),
               **kwargs)


def claims_of(request: httpx.Request) -> dict:
    """Check the bearer token's signature as the server does and return its claims."""
    scheme, _, token = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer" and token.startswith(TOKEN_PREFIX)
    payload, signature = token[len(TOKEN_PREFIX):].split(".")
    assert hmac.compare_digest(token_sign(payload, SECRET), signature)
    return json.loads(b64url_decode(payload))


# --- tokens ------------------------------------------------------------------------------

def test_token_is_minted_from_the_secret_and_verifies():
    rec = Recorder()
    with make(rec, token_lifetime_s=600) as fc:
        fc.get_run("r1")
    claims = claims_of(rec.last)
    assert {k: claims[k] for k in ("kid", "sub", "tenant", "scope")} == {
        "kid": KID, "sub": "harness", "tenant": TENANT, "scope": DEFAULT_SCOPE}
    assert claims["exp"] - claims["iat"] == 600


def test_token_with_another_secret_does_not_verify():
    rec = Recorder()
    fc = FCClient(BASE, KID, "other-secret", TENANT, "x", transport=httpx.MockTransport(rec))
    fc.get_run("r1")
    with pytest.raises(AssertionError):
        claims_of(rec.last)


def test_token_is_reused_until_near_expiry(monkeypatch):
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(client_module.time, "time", lambda: clock["now"])
    rec = Recorder()
    fc = make(rec, token_lifetime_s=300)
    fc.get_run("a")
    clock["now"] += 200
    fc.get_run("b")
    assert rec.requests[0].headers["Authorization"] == rec.requests[1].headers["Authorization"]
    clock["now"] += 80  # 20 s left: re-mint
    fc.get_run("c")
    assert claims_of(rec.last)["iat"] == 1_000_280


def test_custom_scope_is_carried():
    rec = Recorder()
    fc = FCClient(BASE, KID, SECRET, TENANT, "reader", scope="runs:read",
                  transport=httpx.MockTransport(rec))
    fc.list_runs()
    assert claims_of(rec.last)["scope"] == "runs:read"


# --- with_sub ----------------------------------------------------------------------------

def test_with_sub_acts_as_another_actor_with_the_same_key():
    rec = Recorder()
    fc = make(rec)
    other = fc.with_sub("approver")
    assert type(other) is FCClient and other.actor == "client:approver"
    other.vote("r1", 7, "approve")
    fc.get_run("r1")
    first, second = (claims_of(r) for r in rec.requests)
    assert (first["sub"], first["kid"]) == ("approver", KID)
    assert (second["sub"], second["kid"]) == ("harness", KID)
    assert fc.sub == "harness"


def test_with_sub_keeps_the_async_class():
    assert type(make(Recorder(), AsyncFCClient).with_sub("b")) is AsyncFCClient


# --- requests ----------------------------------------------------------------------------

CALLS = [
    ("create_run", ("wf", {"amount": 1}), {"idempotency_key": "k1", "metadata": {"m": 1}},
     "POST", "/workflows/runs", {},
     {"workflow": "wf", "input": {"amount": 1}, "idempotency_key": "k1", "metadata": {"m": 1}}),
    ("create_run", ("wf", {}), {"version": 2}, "POST", "/workflows/runs", {},
     {"workflow": "wf", "input": {}, "version": 2}),
    ("get_run", ("r1",), {}, "GET", "/workflows/runs/r1", {}, None),
    ("get_run", ("r1",), {"include_logs": True}, "GET", "/workflows/runs/r1",
     {"include_logs": "true"}, None),
    ("list_runs", (), {"status": "paused", "workflow": None}, "GET", "/workflows/runs",
     {"status": "paused"}, None),
    ("set_status", ("r1", "paused"), {"reason": "why"}, "PATCH", "/workflows/runs/r1/status",
     {}, {"status": "paused", "reason": "why"}),
    ("report_step", ("r1", "step_1", "succeeded"), {"output": {"ok": True}}, "PATCH",
     "/workflows/runs/r1/steps/step_1", {},
     {"status": "succeeded", "output": {"ok": True}, "error": None}),
    ("request_gate", ("r1", "look"), {"step_id": "s2", "required_approvals": 2}, "POST",
     "/workflows/runs/r1/gates", {}, {"reason": "look", "step_id": "s2",
                                      "required_approvals": 2}),
    ("list_gates", ("r1",), {}, "GET", "/workflows/runs/r1/gates", {}, None),
    ("vote", ("r1", 3, "approve"), {"comment": "ok", "input": {"ticket": "T-1"}}, "PATCH",
     "/workflows/runs/r1/gates/3", {},
     {"decision": "approve", "comment": "ok", "input": {"ticket": "T-1"}}),
    ("receipt", ("r1",), {}, "GET", "/workflows/runs/r1/receipt", {}, None),
    ("evidence", ("r1",), {}, "GET", "/workflows/runs/r1/evidence", {}, None),
    ("audit", (), {"code": "FC-RUN-002", "limit": 5}, "GET", "/workflows/audit",
     {"code": "FC-RUN-002", "limit": "5"}, None),
    ("audit_verify", (), {}, "GET", "/workflows/audit/verify", {}, None),
    ("audit_verify_start", (), {}, "POST", "/workflows/audit/verify", {}, None),
    ("audit_verification", (), {}, "GET", "/workflows/audit/verify/latest", {}, None),
    ("audit_verification", (7,), {}, "GET", "/workflows/audit/verify/7", {}, None),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "method", "path", "params", "body"), CALLS)
def test_each_method_sends_the_documented_request(name, args, kwargs, method, path, params,
                                                  body):
    rec = Recorder()
    getattr(make(rec), name)(*args, **kwargs)
    request = rec.last
    assert (request.method, request.url.path) == (method, path)
    assert dict(request.url.params) == params
    assert (json.loads(request.content) if request.content else None) == body


def test_base_url_trailing_slash_is_ignored():
    rec = Recorder()
    FCClient(BASE + "/", KID, SECRET, TENANT, "x",
             transport=httpx.MockTransport(rec)).get_run("r1")
    assert str(rec.last.url) == f"{BASE}/workflows/runs/r1"


# --- errors ------------------------------------------------------------------------------

def test_json_error_becomes_fcerror_with_body():
    body = {"code": "four_eyes", "detail": "You requested this gate.", "gate_id": 3}
    rec = Recorder(httpx.Response(403, json=body))
    with pytest.raises(FCError) as info:
        make(rec).vote("r1", 3, "approve")
    exc = info.value
    assert (exc.status, exc.code, exc.detail, exc.body) == (403, "four_eyes",
                                                            "You requested this gate.", body)


def test_conflict_keeps_its_context():
    body = {"code": "invalid_transition", "detail": "Run is completed", "current": "completed",
            "allowed": []}
    with pytest.raises(FCError) as info:
        make(Recorder(httpx.Response(409, json=body))).set_status("r1", "paused")
    assert info.value.status == 409 and info.value.body["current"] == "completed"


def test_non_json_error_is_still_an_fcerror():
    with pytest.raises(FCError) as info:
        make(Recorder(httpx.Response(502, text="Bad Gateway"))).get_run("r1")
    assert (info.value.status, info.value.code, info.value.detail) == (502, "http_502",
                                                                       "Bad Gateway")


def test_transport_failure_is_status_zero():
    rec = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(FCTransportError) as info:
        make(rec).get_run("r1")
    assert info.value.status == 0 and isinstance(info.value, FCError)


def test_success_returns_decoded_json():
    run = {"run_id": "r1", "status": "running"}
    assert make(Recorder(httpx.Response(201, json=run))).create_run("wf", {}) == run


# --- wait_for ----------------------------------------------------------------------------

def test_wait_for_polls_until_the_predicate_holds():
    rec = Recorder(*(httpx.Response(200, json={"run_id": "r1", "status": s})
                     for s in ("pending", "running", "completed")))
    run = make(rec).wait_for("r1", lambda r: r["status"] == "completed", timeout=5,
                             interval=0)
    assert run["status"] == "completed" and len(rec.requests) == 3


def test_wait_for_times_out_with_the_last_run():
    rec = Recorder(httpx.Response(200, json={"run_id": "r1", "status": "paused"}))
    with pytest.raises(WaitTimeout) as info:
        make(rec).wait_for("r1", lambda r: False, timeout=0, interval=0)
    assert info.value.body["status"] == "paused" and "paused" in info.value.detail


# --- async -------------------------------------------------------------------------------

def test_async_client_has_the_same_methods_and_errors():
    rec = Recorder(httpx.Response(201, json={"run_id": "r1", "status": "pending"}),
                   httpx.Response(200, json={"run_id": "r1", "status": "running"}),
                   httpx.Response(404, json={"code": "not_found", "detail": "No such run."}))

    async def scenario():
        async with make(rec, AsyncFCClient) as fc:
            created = await fc.create_run("wf", {"amount": 1}, idempotency_key="k")
            run = await fc.wait_for("r1", lambda r: r["status"] == "running", timeout=5,
                                    interval=0)
            with pytest.raises(FCError) as info:
                await fc.get_run("nope")
            return created, run, info.value

    created, run, error = asyncio.run(scenario())
    assert created["status"] == "pending" and run["status"] == "running"
    assert (error.status, error.code) == (404, "not_found")
    assert claims_of(rec.requests[0])["sub"] == "harness"
    assert json.loads(rec.requests[0].content)["idempotency_key"] == "k"


# --- fcore.interfaces.proof's client-side recomputation ---------------------------------------

def chain(stream="run/r1", n=4):
    """Events as the API returns them, hashed with the server's own function."""
    events, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        body = {"stream": stream, "seq": seq, "code": "FC-RUN-002", "actor": "system:engine",
                "at": f"2026-02-06T10:00:0{seq}.000000Z",
                "data": {"from": "a", "to": "b", "amount": 1.5, "ü": [seq]}}
        digest = event_hash(prev_hash=prev, **body)
        events.append({**body, "message": "x", "prev_hash": prev, "hash": digest})
        prev = digest
    return events


def test_chain_check_agrees_with_the_server_hash():
    report = chain_check(chain())
    assert report["ok"] and report["events"] == 4 and report["head_hash"] == chain()[-1]["hash"]


@pytest.mark.parametrize("tamper", [
    lambda ev: ev[1]["data"].update(to="z"),
    lambda ev: ev[2].update(actor="user:mallory"),
    lambda ev: ev.pop(1),
    lambda ev: ev[3].update(prev_hash="f" * 64),
])
def test_chain_check_finds_tampering(tamper):
    events = chain()
    tamper(events)
    assert not chain_check(events)["ok"]


def test_status_transitions_come_from_run_002_events():
    logs = [{"code": "FC-RUN-001", "data": {}},
            {"code": "FC-RUN-002", "data": {"from": "pending", "to": "running", "reason": "r"}},
            {"code": "FC-STEP-001", "data": {}},
            {"code": "FC-RUN-002", "data": {"from": "running", "to": "failed"}}]
    assert [(t["from"], t["to"]) for t in status_transitions(logs)] == [
        ("pending", "running"), ("running", "failed")]


def test_receipts_check_agrees_with_the_server_receipts():
    receipts, prev = [], GENESIS_HASH
    for step in ("step_1", "step_2"):
        fields = {"step_id": step, "attempt": 1, "input_hash": "1" * 64,
                  "output_hash": "2" * 64, "decision": "allow",
                  "policy_versions": [{"policy_id": 1, "version": 1}]}
        digest = receipt_hash(run_id="r1", prev_receipt_hash=prev, **fields)
        receipts.append({**fields, "prev_receipt_hash": prev, "receipt_hash": digest})
        prev = digest
    logs = chain("run/r1", 3)
    seal = {**logs[-1], "code": "FC-RUN-003"}
    run = {"run_id": "r1", "status": "completed",
           "workflow_hash": workflow_hash(run_id="r1", status="completed",
                                          last_receipt_hash=prev, stream="run/r1",
                                          head_seq=seal["seq"] - 1,
                                          head_hash=seal["prev_hash"])}
    report = {"receipts": receipts}
    assert receipts_check(run, report, logs[:-1] + [seal])["ok"]
    assert not receipts_check({**run, "status": "failed"}, report, logs[:-1] + [seal])["ok"]
    receipts[0]["decision"] = "flag"
    assert not receipts_check(run, report, logs[:-1] + [seal])["ok"]
