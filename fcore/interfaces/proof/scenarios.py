"""The three PT-004 control-flow tests and the campaign that runs them."""

import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from audit.codes import Code
from fcore.interfaces.client import FCClient, FCError

from .checks import (
    CAMPAIGN,
    STEPS,
    TERMINAL,
    WORKFLOW,
    chain_check,
    decision_of,
    receipts_check,
    status_transitions,
    step_of,
)


@dataclass
class CaseResult:
    """What one control-flow test did and found (the JSON report holds it as is)."""

    key: str
    title: str
    input: dict
    expected_transitions: list[str]
    run_id: str | None = None
    passed: bool = False
    final_status: str | None = None
    transitions: list[dict] = field(default_factory=list)
    audit_trail: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    receipts: list[dict] = field(default_factory=list)
    workflow_hash: str | None = None
    receipt_verified: bool | None = None
    chain: dict = field(default_factory=dict)
    receipt_chain: dict = field(default_factory=dict)
    server_chain: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0


class Scenario:
    """Drives one run through the API and records checks on a `CaseResult`."""

    def __init__(self, client: FCClient, approver: FCClient, result: CaseResult, *,
                 timeout: float, nonce: str):
        self.fc, self.approver, self.result, self.timeout = client, approver, result, timeout
        self.key = f"pt004-{nonce}-{result.key}"

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.result.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        return bool(ok)

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def create(self) -> str:
        run = self.fc.create_run(WORKFLOW, self.result.input, idempotency_key=self.key,
                                 metadata={"campaign": "PT-004", "test": self.result.key})
        self.result.run_id = run["run_id"]
        self.note(f"created run {run['run_id']} ({run['status']})")
        return run["run_id"]

    def wait_run(self, *statuses: str) -> dict:
        run = self.fc.wait_for(self.result.run_id,
                               lambda r: r["status"] in statuses or r["status"] in TERMINAL,
                               timeout=self.timeout)
        if run["status"] not in statuses:
            raise FCError(0, "unexpected_state",
                          f"run is {run['status']}, expected {'/'.join(statuses)}", run)
        self.note(f"run is {run['status']}")
        return run

    def execute(self, step_id: str) -> dict:
        """Wait until the engine started the step, then report it succeeded."""
        run = self.fc.wait_for(
            self.result.run_id,
            lambda r: step_of(r, step_id).get("status") == "running" or r["status"] in TERMINAL,
            timeout=self.timeout)
        if step_of(run, step_id).get("status") != "running":
            raise FCError(0, "unexpected_state", f"{step_id} is "
                          f"{step_of(run, step_id).get('status')} and the run {run['status']}",
                          run)
        output = {"step": step_id, "executed_by": self.fc.sub, "ok": True}
        run = self.fc.report_step(self.result.run_id, step_id, "succeeded", output=output)
        self.note(f"{step_id} executed and reported succeeded")
        return run

    def collect(self) -> tuple[dict, list[dict]]:
        """Fetch the run with its logs, its receipts and the server's chain verdict."""
        r, run_id = self.result, self.result.run_id
        run = self.fc.get_run(run_id, include_logs=True)
        logs = run.get("logs", [])
        receipt = self.fc.receipt(run_id)
        r.final_status, r.workflow_hash = run["status"], run.get("workflow_hash")
        r.transitions = status_transitions(logs)
        r.audit_trail = [{"seq": e["seq"], "code": e["code"], "message": e["message"],
                          "actor": e["actor"], "at": e["at"]} for e in logs]
        r.steps = [{k: s.get(k) for k in ("step_id", "status", "decision", "attempt",
                                          "input_hash", "output_hash", "receipt_hash")}
                   for s in run.get("steps", [])]
        r.receipts = [{"step_id": x["step_id"], "attempt": x["attempt"],
                       "receipt_hash": x["receipt_hash"]} for x in receipt["receipts"]]
        r.receipt_verified = receipt.get("verified")
        r.chain = chain_check(logs)
        r.receipt_chain = receipts_check(run, receipt, logs)
        r.server_chain = self.fc.audit_verify()
        return run, logs

    def common_checks(self, run: dict, logs: list[dict]) -> None:
        r = self.result
        got = [t["from"] for t in r.transitions[:1]] + [t["to"] for t in r.transitions]
        self.check("status transitions", got == r.expected_transitions,
                   " → ".join(got) or "none")
        self.check("audit chain recomputed client-side", r.chain["ok"],
                   f"{r.chain['events']} events, failures: {r.chain['failures'] or 'none'}")
        self.check("server verifies the tenant's chains (GET /workflows/audit/verify)",
                   r.server_chain.get("ok") is True,
                   f"{r.server_chain.get('streams')} streams, {r.server_chain.get('events')} "
                   f"events, failures: {r.server_chain.get('failures') or 'none'}")
        self.check("server verifies receipts (GET …/receipt)", r.receipt_verified is True,
                   f"verified={r.receipt_verified}")
        self.check("workflow_hash set and sealed (FC-RUN-003)",
                   bool(r.workflow_hash) and any(e["code"] == Code.RUN_SEALED for e in logs),
                   r.workflow_hash or "missing")
        self.check("receipts and seal recomputed client-side", r.receipt_chain["ok"],
                   f"{r.receipt_chain['receipts']} receipts, failures: "
                   f"{r.receipt_chain['failures'] or 'none'}")
        self.check("every decision recorded (FC-POL-001)",
                   len([e for e in logs if e["code"] == Code.POLICY_DECISION])
                   == len(run.get("decisions", [])) > 0,
                   f"{len(run.get('decisions', []))} decisions")


# --- the three tests ---------------------------------------------------------------------

def happy_path(s: Scenario) -> None:
    s.create()
    for step_id in STEPS:
        s.execute(step_id)
    s.wait_run("completed")
    run, logs = s.collect()
    s.common_checks(run, logs)
    s.check("every step succeeded",
            all(step_of(run, sid).get("status") == "succeeded" for sid in STEPS),
            ", ".join(f"{x['step_id']}={x['status']}" for x in run["steps"]))
    s.check("every decision allow",
            all(decision_of(run, sid) == "allow" for sid in STEPS),
            ", ".join(f"{sid}={decision_of(run, sid)}" for sid in STEPS))
    s.check("a receipt per step", len(s.result.receipts) == len(STEPS),
            f"{len(s.result.receipts)} receipts")


def policy_flag(s: Scenario) -> None:
    approver = s.approver
    run_id = s.create()
    s.execute("step_1")
    run = s.fc.wait_for(run_id, lambda r: r["status"] in TERMINAL or (
        r["status"] == "paused" and any(g["status"] == "open" and g["step_id"] == "step_2"
                                        for g in r["gates"])), timeout=s.timeout)
    gates = [g for g in run["gates"] if g["status"] == "open" and g["step_id"] == "step_2"]
    s.check("run paused at an open gate on step_2", run["status"] == "paused" and gates,
            f"run {run['status']}, open gates on step_2: {len(gates)}")
    s.check("step_2 decision flag", decision_of(run, "step_2") == "flag",
            str(decision_of(run, "step_2")))
    if not gates:
        raise FCError(0, "unexpected_state", "no open gate on step_2", run)
    gate_id = gates[0]["gate_id"]
    s.note(f"run paused at gate {gate_id}: {gates[0]['reason']}")
    try:
        s.fc.vote(run_id, gate_id, "approve", comment="self-approval must be refused")
        s.check("creator's vote refused (403 four_eyes)", False, "the vote was accepted")
    except FCError as exc:
        s.check("creator's vote refused (403 four_eyes)",
                exc.status == 403 and exc.code == "four_eyes", f"{exc.status} {exc.code}")
    gate = approver.vote(run_id, gate_id, "approve", comment="PT-004 second approver")
    s.check(f"gate approved by {approver.actor}",
            gate["status"] == "approved"
            and any(a["actor"] == approver.actor for a in gate["approvals"]),
            f"gate {gate['status']}, votes by "
            f"{', '.join(a['actor'] for a in gate['approvals'])}")
    s.note(f"gate {gate_id} approved by {approver.actor}")
    s.wait_run("running")
    for step_id in STEPS[1:]:
        s.execute(step_id)
    s.wait_run("completed")
    run, logs = s.collect()
    s.common_checks(run, logs)
    codes = {e["code"] for e in logs}
    s.check("gate events FC-GATE-001/002/003",
            {Code.GATE_OPENED, Code.GATE_VOTE, Code.GATE_RESOLVED} <= codes,
            ", ".join(sorted(c for c in codes if c.startswith("FC-GATE"))))
    s.check("every step succeeded",
            all(step_of(run, sid).get("status") == "succeeded" for sid in STEPS),
            ", ".join(f"{x['step_id']}={x['status']}" for x in run["steps"]))


def policy_deny(s: Scenario) -> None:
    s.create()
    s.execute("step_1")
    s.wait_run("failed")
    run, logs = s.collect()
    s.common_checks(run, logs)
    s.check("step_2 decision deny", decision_of(run, "step_2") == "deny",
            str(decision_of(run, "step_2")))
    s.check("step_1 succeeded, steps 2-5 cancelled",
            step_of(run, "step_1").get("status") == "succeeded"
            and all(step_of(run, sid).get("status") == "cancelled" for sid in STEPS[1:]),
            ", ".join(f"{x['step_id']}={x['status']}" for x in run["steps"]))


TESTS = (
    ("happy_path", "Test A: Happy Path (All Allow)", {"amount": 500},
     ["pending", "running", "completed"], happy_path),
    ("policy_flag", "Test B: Policy Flag (Gate Required)", {"amount": 25000},
     ["pending", "running", "paused", "running", "completed"], policy_flag),
    ("policy_deny", "Test C: Policy Deny (Fail-Closed)", {"amount": 5000000},
     ["pending", "running", "failed"], policy_deny),
)


# --- the campaign ------------------------------------------------------------------------

@dataclass
class ProofConfig:
    url: str
    kid: str
    secret: str
    tenant: str = "tenant_omega"
    sub: str = "pt004_test_harness"
    approver_sub: str = "pt004_approver"
    timeout: float = 60.0


def proof_run(config: ProofConfig, *, transport=None) -> dict:
    """Run the three tests; returns the report (a JSON-ready dict)."""
    started = datetime.now(UTC)
    nonce = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    client = FCClient(config.url, config.kid, config.secret, config.tenant, config.sub,
                      transport=transport)
    approver = client.with_sub(config.approver_sub)
    results = []
    with client, approver:
        for key, title, input_, expected, test in TESTS:
            result = CaseResult(key=key, title=title, input=input_,
                                expected_transitions=expected)
            scenario = Scenario(client, approver, result, timeout=config.timeout, nonce=nonce)
            t0 = time.monotonic()
            try:
                test(scenario)
            except FCError as exc:
                result.error = f"{exc.status} {exc.code}: {exc.detail}"
            except Exception as exc:  # a harness reports, it does not crash
                result.error = f"{type(exc).__name__}: {exc}"
            if result.error:
                if result.run_id and not result.audit_trail:
                    try:  # keep what the server recorded, for the report
                        scenario.collect()
                    except FCError:
                        pass
            result.duration_s = round(time.monotonic() - t0, 3)
            result.passed = (result.error is None and bool(result.checks)
                             and all(c["ok"] for c in result.checks))
            results.append(result)
    passed = sum(r.passed for r in results)
    return {
        "campaign": CAMPAIGN, "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "url": config.url, "tenant": config.tenant, "workflow": WORKFLOW,
        "actor": client.actor, "approver": approver.actor, "invocation": nonce,
        "passed": passed == len(results),
        "summary": {"tests": len(results), "passed": passed, "failed": len(results) - passed},
        "tests": [asdict(r) for r in results],
    }
