"""Human-readable messages of audit events, derived from the hashed code and data.

Messages are not stored: deriving them from hashed fields means they cannot be altered
without breaking the chain.
"""

TITLES = {
    "FC-RUN-001": "Workflow run created for '{workflow}'",
    "FC-RUN-002": "Run status changed from {from} to {to}",
    "FC-RUN-003": "Run sealed with status {status}",
    "FC-STEP-001": "Step {step_id} started",
    "FC-STEP-002": "Step {step_id} completed",
    "FC-STEP-003": "Step {step_id} failed",
    "FC-STEP-004": "Step {step_id} retry scheduled",
    "FC-STEP-005": "Step {step_id} {status}",
    "FC-POL-001": "Policy decision for step {step_id}: {decision}",
    "FC-GATE-001": "Gate opened at step {step_id}",
    "FC-GATE-002": "Vote recorded on gate: {vote}",
    "FC-GATE-003": "Gate resolved: {status}",
    "FC-GATE-004": "Gate expired",  # or "Gate escalated to …" (see event_message)
    "FC-GATE-005": "Gate overridden (break-glass)",
    "FC-GATE-006": "Override of gate {gate_id} reviewed",
    "FC-ADM-001": "Policy '{policy}' changed to version {version}",
    "FC-ADM-002": "Workflow definition '{workflow}' version {version} published",
    "FC-ADM-003": "API client '{name}' {action}",
    "FC-ADM-004": "Webhook endpoint '{name}' {action}",
    "FC-ADM-005": "Membership of '{user}' {action}",
    "FC-AUD-001": "Checkpoint sealed",
    "FC-AUD-002": "Signing key {key_id} put in service",
}


class _Missing(dict):
    def __missing__(self, key):
        return "?"


def event_message(code: str, data: dict) -> str:
    """The message of an event, e.g. `Run status changed from pending to running`."""
    template = TITLES.get(code, code)
    message = template.format_map(_Missing({k: v for k, v in data.items()}))
    reason = data.get("reason")
    if code == "FC-RUN-002" and reason:
        message += f" ({reason})"
    if code == "FC-GATE-004" and data.get("action") == "escalated":
        message = f"Gate escalated to {data.get('escalate_to') or '?'}"
    return message
