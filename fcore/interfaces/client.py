"""A small HTTP client for the Federation Core machine API (DESIGN §8). No Django.

    from fcore.interfaces.client import FCClient

    with FCClient("http://127.0.0.1:8000", kid=..., secret=..., tenant="tenant_omega",
                  sub="payments-bot") as fc:
        run = fc.create_run("pt004_execution_spine", {"amount": 500})
        fc.report_step(run["run_id"], "step_1", "succeeded", output={"ok": True})

`AsyncFCClient` has the same methods as coroutines. Each client mints its own `omega_`
bearer token from its secret (`fcore.tokens.token_mint`) and reuses it until it is close to
expiry. `with_sub(sub)` gives a client acting as another actor with the same key — the
second approver of a four-eyes gate. Every non-2xx answer raises `FCError` carrying the
status and the API's `{"code", "detail", ...}` body; a transport failure raises
`FCTransportError` (status 0).

The API methods are shared: each builds one request and hands it to `_call`, which the sync
client performs at once and the async client returns as a coroutine.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from fcore.tokens import token_mint

from .work import awork as awork_loop
from .work import work as work_loop

DEFAULT_SCOPE = "runs:read runs:write gates:request gates:resolve audit:read tasks:claim"
API_PREFIX = "/workflows"
MAX_WAIT_S = 30  # the longest waiting read the server takes


class FCError(Exception):
    """A non-2xx answer: HTTP `status`, the error `code` and `detail`, and the JSON `body`."""

    def __init__(self, status: int, code: str, detail: str, body: Any = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body

    @classmethod
    def from_response(cls, response: httpx.Response) -> "FCError":
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body:
            return cls(response.status_code, str(body["code"]), str(body.get("detail", "")),
                       body)
        text = response.text[:500]
        return cls(response.status_code, f"http_{response.status_code}", text, body)


class FCTransportError(FCError):
    """The server could not be reached or did not answer (status 0)."""

    def __init__(self, detail: str):
        super().__init__(0, "transport_error", detail, None)


class WaitTimeout(FCError):
    """`wait_for` gave up; `body` is the last run seen."""

    def __init__(self, run_id: str, timeout: float, last: dict | None):
        status = (last or {}).get("status")
        super().__init__(0, "wait_timeout",
                         f"run {run_id} did not reach the expected state within {timeout}s "
                         f"(last status: {status})", last)


class _ClientBase:
    """Configuration, token minting and the API methods shared by both clients."""

    def __init__(self, base_url: str, kid: str, secret: str, tenant: str, sub: str,
                 scope: str = DEFAULT_SCOPE, *, timeout: float = 30.0,
                 token_lifetime_s: int = 300, transport: Any = None):
        self.base_url = base_url.rstrip("/")
        self.kid = kid
        self.secret = secret
        self.tenant = tenant
        self.sub = sub
        self.scope = scope
        self.timeout = timeout
        self.token_lifetime_s = token_lifetime_s
        self._transport = transport
        self._token: str | None = None
        self._token_exp = 0.0

    @property
    def actor(self) -> str:
        """The actor string the server records for this client (`client:<sub>`)."""
        return f"client:{self.sub}"

    def with_sub(self, sub: str):
        """A new client of the same class and key acting as another `sub`."""
        return type(self)(self.base_url, self.kid, self.secret, self.tenant, sub, self.scope,
                          timeout=self.timeout, token_lifetime_s=self.token_lifetime_s,
                          transport=self._transport)

    def token(self) -> str:
        """The bearer token: minted on first use, re-minted 30 s before it expires."""
        now = time.time()
        if self._token is None or now > self._token_exp - 30:
            iat = int(now)
            self._token = token_mint(kid=self.kid, secret=self.secret, sub=self.sub,
                                     tenant=self.tenant, scope=self.scope,
                                     lifetime_s=self.token_lifetime_s, now=iat)
            self._token_exp = iat + self.token_lifetime_s
        return self._token

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if not response.is_success:
            raise FCError.from_response(response)
        if not response.content:
            return None
        return response.json()

    def _call(self, method: str, path: str, *, params: dict | None = None,
              json: Any = None, timeout: float | None = None):
        raise NotImplementedError

    @staticmethod
    def _next_wait(run: dict, deadline: float, interval: float) -> tuple[float, dict | None]:
        """(seconds left, the waiting read's arguments — None for a server that gives no
        `audit_seq`, which is polled every `interval` seconds instead)."""
        left = deadline - time.monotonic()
        if "audit_seq" not in run:
            return left, None
        return left, {"wait_s": left, "after_seq": run["audit_seq"]}

    # --- the API -------------------------------------------------------------------------

    def create_run(self, workflow: str, input: dict | None = None, version: int | None = None,
                   idempotency_key: str | None = None, metadata: dict | None = None):
        """`POST /workflows/runs`: start a run; a replayed key returns the same run."""
        body: dict = {"workflow": workflow, "input": input or {}}
        if version is not None:
            body["version"] = version
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if metadata is not None:
            body["metadata"] = metadata
        return self._call("POST", "/runs", json=body)

    def get_run(self, run_id: str, include_logs: bool = False, *,
                wait_s: float | None = None, after_seq: int | None = None):
        """`GET /workflows/runs/{id}`: the run with steps, decisions, gates (and logs).
        With `wait_s` and `after_seq` (a run's `audit_seq`) a waiting read: the answer
        comes once the run's audit stream is past `after_seq`, or after `wait_s` seconds
        (at most 30) unchanged."""
        params = {"include_logs": "true"} if include_logs else {}
        if wait_s is not None:
            params.update(wait_s=f"{min(max(wait_s, 0), MAX_WAIT_S):.3f}",
                          after_seq=after_seq or 0)
            return self._call("GET", f"/runs/{run_id}", params=params,
                              timeout=self.timeout + min(wait_s, MAX_WAIT_S))
        return self._call("GET", f"/runs/{run_id}", params=params or None)

    def list_runs(self, **filters):
        """`GET /workflows/runs`: one page `{next, previous, results}`; filters: status,
        workflow, created_by, cursor, limit."""
        return self._call("GET", "/runs", params=_params(filters))

    def set_status(self, run_id: str, status: str, reason: str = ""):
        """`PATCH /workflows/runs/{id}/status`: operator pause, resume, cancel or fail."""
        return self._call("PATCH", f"/runs/{run_id}/status",
                          json={"status": status, "reason": reason})

    def report_step(self, run_id: str, step_id: str, status: str, output: Any = None,
                    error: Any = None, attempt: int | None = None,
                    lease_token: str | None = None):
        """`PATCH /workflows/runs/{id}/steps/{step}`: an external step succeeded or failed;
        a claimed step's report carries its `lease_token`."""
        body: dict = {"status": status, "output": output, "error": error}
        if attempt is not None:
            body["attempt"] = attempt
        if lease_token is not None:
            body["lease_token"] = lease_token
        return self._call("PATCH", f"/runs/{run_id}/steps/{step_id}", json=body)

    def claim_tasks(self, step_types: list[str] | None = None,
                    workflows: list[str] | None = None, max: int = 1, wait_s: float = 0,
                    lease_s: int = 60):
        """`POST /workflows/tasks/claim`: lease up to `max` external steps, waiting up to
        `wait_s` for work; returns `{"tasks": [...]}` (scope `tasks:claim`)."""
        body: dict = {"max": max, "wait_s": wait_s, "lease_s": lease_s}
        if step_types is not None:
            body["step_types"] = list(step_types)
        if workflows is not None:
            body["workflows"] = list(workflows)
        return self._call("POST", "/tasks/claim", json=body,
                          timeout=max_wait_timeout(self.timeout, wait_s))

    def heartbeat(self, run_id: str, step_id: str, lease_token: str,
                  lease_s: int | None = None):
        """`POST /workflows/runs/{id}/steps/{step}/heartbeat`: extend a claimed step's
        lease; `FCError` 409 `lease_lost` when it is no longer this executor's."""
        body: dict = {"lease_token": lease_token}
        if lease_s is not None:
            body["lease_s"] = lease_s
        return self._call("POST", f"/runs/{run_id}/steps/{step_id}/heartbeat", json=body)

    def request_gate(self, run_id: str, reason: str, step_id: str | None = None,
                     **gate_settings):
        """`POST /workflows/runs/{id}/gates`: open a gate (required_approvals,
        approver_group, expires_in, on_timeout, escalate_to, input_schema)."""
        body = {"reason": reason, **gate_settings}
        if step_id is not None:
            body["step_id"] = step_id
        return self._call("POST", f"/runs/{run_id}/gates", json=body)

    def list_gates(self, run_id: str):
        """`GET /workflows/runs/{id}/gates`: the run's gates, oldest first."""
        return self._call("GET", f"/runs/{run_id}/gates")

    def vote(self, run_id: str, gate_id: int | str, decision: str, comment: str = "",
             input: Any = None):
        """`PATCH /workflows/runs/{id}/gates/{gate}`: approve or reject."""
        body: dict = {"decision": decision, "comment": comment}
        if input is not None:
            body["input"] = input
        return self._call("PATCH", f"/runs/{run_id}/gates/{gate_id}", json=body)

    def receipt(self, run_id: str):
        """`GET /workflows/runs/{id}/receipt`: `{verified, workflow_hash, receipts, failures}`."""
        return self._call("GET", f"/runs/{run_id}/receipt")

    def evidence(self, run_id: str):
        """`GET /workflows/runs/{id}/evidence`: the run's evidence pack."""
        return self._call("GET", f"/runs/{run_id}/evidence")

    def audit(self, **filters):
        """`GET /workflows/audit`: one page of events; filters: stream, run_id, code, actor,
        cursor, limit."""
        return self._call("GET", "/audit", params=_params(filters))

    def audit_verify(self):
        """`GET /workflows/audit/verify`: `{ok, streams, events, failures}` for the tenant,
        walked inside the request (a large trail: `audit_verify_start`)."""
        return self._call("GET", "/audit/verify")

    def audit_verify_start(self):
        """`POST /workflows/audit/verify`: start a background verification (or get the one
        in progress): `{verification_id, status, …}`."""
        return self._call("POST", "/audit/verify")

    def audit_verification(self, verification_id: int | str = "latest"):
        """`GET /workflows/audit/verify/{verification_id}` (default the latest): its
        `status` and, once `done`, its `report`."""
        return self._call("GET", f"/audit/verify/{verification_id}")


def max_wait_timeout(timeout: float, wait_s: float) -> float:
    """A request that may wait `wait_s` on the server gets that much longer to answer."""
    return timeout + wait_s


def _params(filters: dict) -> dict:
    return {k: v for k, v in filters.items() if v is not None}


class FCClient(_ClientBase):
    """Synchronous client over `httpx.Client`; use as a context manager or call `close()`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = httpx.Client(base_url=self.base_url + API_PREFIX, timeout=self.timeout,
                                  transport=self._transport)

    def _call(self, method, path, *, params=None, json=None, timeout=None):
        try:
            response = self._http.request(
                method, path, params=params, json=json, headers=self._headers(),
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        except httpx.HTTPError as exc:
            raise FCTransportError(f"{method} {path}: {exc}") from exc
        return self._decode(response)

    def wait_for(self, run_id: str, predicate: Callable[[dict], bool], timeout: float = 30.0,
                 interval: float = 0.2, include_logs: bool = False) -> dict:
        """Wait until `predicate(run)` is true; returns that run or raises `WaitTimeout`
        (an `FCError`). Each read after the first is a waiting read that answers when the
        run changes (`get_run(wait_s=…, after_seq=…)`), so no polling; `interval` is the
        polling period against a server without waiting reads."""
        deadline = time.monotonic() + timeout
        run = self.get_run(run_id, include_logs=include_logs)
        while not predicate(run):
            left, wait = self._next_wait(run, deadline, interval)
            if left <= 0:
                raise WaitTimeout(run_id, timeout, run)
            if wait is None:
                time.sleep(min(interval, left))
            run = self.get_run(run_id, include_logs=include_logs, **(wait or {}))
        return run

    def work(self, handler: Callable, **options) -> int:
        """Run the executor loop (`fcore.interfaces.work.work`): claim → handle →
        heartbeat → report, until SIGTERM/SIGINT or `stop`; returns how many tasks ran."""
        return work_loop(self, handler, **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncFCClient(_ClientBase):
    """Asynchronous client over `httpx.AsyncClient`; every API method is a coroutine."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = httpx.AsyncClient(base_url=self.base_url + API_PREFIX,
                                       timeout=self.timeout, transport=self._transport)

    async def _call(self, method, path, *, params=None, json=None, timeout=None):
        try:
            response = await self._http.request(
                method, path, params=params, json=json, headers=self._headers(),
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        except httpx.HTTPError as exc:
            raise FCTransportError(f"{method} {path}: {exc}") from exc
        return self._decode(response)

    async def wait_for(self, run_id: str, predicate: Callable[[dict], bool],
                       timeout: float = 30.0, interval: float = 0.2,
                       include_logs: bool = False) -> dict:
        """`FCClient.wait_for` as a coroutine: waiting reads, no polling."""
        deadline = time.monotonic() + timeout
        run = await self.get_run(run_id, include_logs=include_logs)
        while not predicate(run):
            left, wait = self._next_wait(run, deadline, interval)
            if left <= 0:
                raise WaitTimeout(run_id, timeout, run)
            if wait is None:
                await asyncio.sleep(min(interval, left))
            run = await self.get_run(run_id, include_logs=include_logs, **(wait or {}))
        return run

    async def work(self, handler: Callable, **options) -> int:
        """The executor loop as a coroutine (`fcore.interfaces.work.awork`); `handler`
        may be a coroutine function or a plain one (run in a thread)."""
        return await awork_loop(self, handler, **options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
