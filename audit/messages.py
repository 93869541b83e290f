"""Human-readable messages of audit events, derived from the hashed code and data.

Messages are not stored: deriving them from hashed fields means they cannot be altered
without breaking the chain.
"""

from .codes import Code

TITLES = {
    Code.RUN_CREATED: "Workflow run created for '{workflow}'",
    Code.RUN_STATUS: "Run status changed from {from} to {to}",
    Code.RUN_SEALED: "Run sealed with status {status}",
    Code.STEP_STARTED: "Step {step_id} started",
    Code.STEP_SUCCEEDED: "Step {step_id} completed",
    Code.STEP_FAILED: "Step {step_id} failed",
    Code.STEP_RETRY: "Step {step_id} retry scheduled",
    Code.STEP_CLOSED: "Step {step_id} {status}",
    Code.STEP_CLAIMED: "Step {step_id} claimed by an executor",
    Code.STEP_LEASE_EXPIRED: "Step {step_id} lease expired; claimable again",
    Code.POLICY_DECISION: "Policy decision for step {step_id}: {decision}",
    Code.GATE_OPENED: "Gate opened at step {step_id}",
    Code.GATE_VOTE: "Vote recorded on gate: {vote}",
    Code.GATE_RESOLVED: "Gate resolved: {status}",
    Code.GATE_EXPIRED: "Gate expired",  # or "Gate escalated to …" (see event_message)
    Code.GATE_OVERRIDDEN: "Gate overridden (break-glass)",
    Code.GATE_OVERRIDE_REVIEWED: "Override of gate {gate_id} reviewed",
    Code.POLICY_CHANGED: "Policy '{policy}' changed to version {version}",
    Code.DEFINITION_PUBLISHED: "Workflow definition '{workflow}' version {version} published",
    Code.API_CLIENT_CHANGED: "API client '{name}' {action}",
    Code.WEBHOOK_ENDPOINT_CHANGED: "Webhook endpoint '{name}' {action}",
    Code.MEMBERSHIP_CHANGED: "Membership of '{user}' {action}",
    Code.SCHEDULE_CHANGED: "Schedule '{schedule}' {action}",
    Code.SCHEDULE_SLOTS_SKIPPED: "Schedule '{schedule}' skipped {count} slot(s)",
    Code.CHECKPOINT_SEALED: "Checkpoint sealed",
    Code.SIGNING_KEY_IN_SERVICE: "Signing key {key_id} put in service",
}


class _Missing(dict):
    def __missing__(self, key):
        return "?"


def event_message(code: str, data: dict) -> str:
    """The message of an event, e.g. `Run status changed from pending to running`."""
    template = TITLES.get(code, code)
    message = template.format_map(_Missing({k: v for k, v in data.items()}))
    reason = data.get("reason")
    if code == Code.RUN_STATUS and reason:
        message += f" ({reason})"
    if code == Code.GATE_EXPIRED and data.get("action") == "escalated":
        message = f"Gate escalated to {data.get('escalate_to') or '?'}"
    return message
