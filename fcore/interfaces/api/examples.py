"""Examples of the run API's requests and answers for the OpenAPI schema: one PT-004 run
seen at the points a client meets it. Values are illustrative; the shapes are the
serializers' own (tests/api/test_schema.py checks each operation has one)."""

from drf_spectacular.utils import OpenApiExample

RUN_ID = "0b6c1f7e-8d3a-4e55-9d0e-2f1c3a4b5c6d"
H = "9f2c6a1d0e4b7c3f8a5d2e1b6c9f0a3d7e4b1c8f5a2d9e6b3c0f7a4d1e8b5c2f"  # a SHA-256 hex
AT = "2026-01-05T09:30:00.000000Z"

STEP = {"step_id": "step_1", "step_type": "external", "index": 0, "after": [],
        "status": "succeeded", "attempt": 1, "decision": "allow", "started_at": AT,
        "ended_at": AT, "input_hash": H, "output_hash": H, "receipt_hash": H,
        "output": {"ok": True}, "error": None}
DECISION = {"step_id": "step_1", "attempt": 1, "decision": "allow", "reason": "no rule fired",
            "policy_id": None, "policy_version": None, "tier": None, "rules_triggered": [],
            "policies": [{"policy": "pt004_spend_review", "version": 1}],
            "evaluated_at": AT, "evaluation_us": 85}
GATE = {"gate_id": 7, "run_id": RUN_ID, "step_id": "step_2", "status": "open",
        "source": "policy", "reason": "amount above 10,000 needs approval",
        "required_approvals": 1, "approvals": [], "requested_by": "system:policy",
        "approver_group": "approvers", "expires_at": "2026-01-06T09:30:00.000000Z",
        "on_timeout": "reject", "escalate_to": "", "input_schema": None, "resolution": None,
        "needs_review": False, "reviewed_by": "", "reviewed_at": None, "review_note": "",
        "created_at": AT, "resolved_at": None}
GATE_APPROVED = {**GATE, "status": "approved", "resolved_at": AT,
                 "approvals": [{"actor": "client:second_approver", "decision": "approve",
                                "comment": "checked the invoice", "input": None, "at": AT}],
                 "resolution": {"decision": "approved", "by": ["client:second_approver"]}}
RUN_SUMMARY = {"run_id": RUN_ID, "tenant_id": "tenant_omega",
               "workflow": "pt004_execution_spine", "workflow_version": 1, "status": "running",
               "status_reason": "", "paused_for_gate": False, "current_step": "step_1",
               "step_index": 0, "input": {"amount": 500}, "output": None,
               "metadata": {"campaign": "PT-004"}, "created_by": "client:harness",
               "idempotency_key": "pt004-happy-1", "created_at": AT, "updated_at": AT,
               "started_at": AT, "ended_at": None, "workflow_hash": ""}
RUN = {**RUN_SUMMARY, "steps": [{**STEP, "status": "running", "ended_at": None,
                                  "output_hash": "", "receipt_hash": "", "output": None}],
       "decisions": [DECISION], "gates": []}
RUN_AFTER_REPORT = {**RUN, "current_step": "step_2", "step_index": 1,
                    "steps": [STEP], "decisions": [DECISION]}
EVENT = {"stream": f"run:{RUN_ID}", "seq": 1, "code": "FC-RUN-001",
         "message": "run created", "actor": "client:harness", "at": AT,
         "data": {"workflow": "pt004_execution_spine", "version": 1}, "prev_hash": "0" * 64,
         "hash": H}
RECEIPT = {"step_id": "step_1", "attempt": 1, "receipt_seq": 1, "input_hash": H,
           "output_hash": H, "decision": "allow",
           "policy_versions": [{"policy": "pt004_spend_review", "version": 1}],
           "prev_receipt_hash": "0" * 64, "receipt_hash": H}
CHAIN_REPORT = {"ok": True, "streams": 3, "events": 412, "checkpoints": 2,
                "keys": ["k-2026-01"], "failures": []}
VERIFICATION = {"verification_id": 12, "status": "pending", "requested_by": "client:auditor",
                "requested_at": AT, "started_at": None, "finished_at": None, "report": None,
                "error": ""}
EVALUATE_OUT = {"decision": "flag", "reason": "amount above 10,000 needs approval",
                "policy_id": 3, "policy_version": 1, "tier": 2,
                "rules_triggered": [{"policy": "pt004_spend_review", "rule": "large-amount",
                                     "effect": "flag"}],
                "policies": [{"policy": "pt004_spend_review", "version": 1}],
                "gate": {"required_approvals": 1, "approver_group": "approvers"},
                "evaluation_us": 120, "context": {"input": {"amount": 25000}}}
EVIDENCE = {"format": "fc-evidence/2", "generated_at": AT,
            "run": {**RUN_SUMMARY, "status": "completed", "ended_at": AT, "workflow_hash": H},
            "definition": {"name": "pt004_execution_spine", "version": 1,
                           "steps": [{"id": "step_1", "type": "external"}], "spec_hash": H},
            "steps": [STEP], "decisions": [DECISION], "gates": [GATE_APPROVED],
            "events": [EVENT], "stream": {"name": f"run:{RUN_ID}", "head_seq": 1,
                                          "head_hash": H},
            "receipts": [RECEIPT], "workflow_hash": H,
            "verification": {"receipts_verified": True, "failures": []},
            "checkpoint_note": None, "checkpoint": {"seq": 4, "root": H, "key_id": "k-2026-01"},
            "attestation": {"key_id": "k-2026-01", "signature": "base64…"}}
SIGNING_KEY = {"key_id": "k-2026-01", "algorithm": "Ed25519",
               "public_key": "MCowBQYDK2VwAyEA…", "created_at": AT, "retired_at": None}


def request(name: str, value, summary: str = "") -> OpenApiExample:
    """A request body example."""
    return OpenApiExample(name, value=value, summary=summary or name, request_only=True)


def response(name: str, value, status: int = 200, summary: str = "") -> OpenApiExample:
    """An answer example for `status`."""
    return OpenApiExample(name, value=value, summary=summary or name, response_only=True,
                          status_codes=[str(status)])
