"""The codes of audit events (DESIGN §7): one enum, used wherever an event is written,
read or described. Members are strings, so a code compares, hashes and serialises as the
string it stands for."""

from enum import StrEnum


class Code(StrEnum):
    RUN_CREATED = "FC-RUN-001"
    RUN_STATUS = "FC-RUN-002"
    RUN_SEALED = "FC-RUN-003"
    STEP_STARTED = "FC-STEP-001"
    STEP_SUCCEEDED = "FC-STEP-002"
    STEP_FAILED = "FC-STEP-003"
    STEP_RETRY = "FC-STEP-004"
    STEP_CLOSED = "FC-STEP-005"  # skipped or cancelled
    STEP_CLAIMED = "FC-STEP-006"  # an executor took an external step's lease
    STEP_LEASE_EXPIRED = "FC-STEP-007"  # its lease expired: claimable again, same attempt
    POLICY_DECISION = "FC-POL-001"
    GATE_OPENED = "FC-GATE-001"
    GATE_VOTE = "FC-GATE-002"
    GATE_RESOLVED = "FC-GATE-003"
    GATE_EXPIRED = "FC-GATE-004"  # or escalated
    GATE_OVERRIDDEN = "FC-GATE-005"
    GATE_OVERRIDE_REVIEWED = "FC-GATE-006"
    POLICY_CHANGED = "FC-ADM-001"
    DEFINITION_PUBLISHED = "FC-ADM-002"
    API_CLIENT_CHANGED = "FC-ADM-003"
    WEBHOOK_ENDPOINT_CHANGED = "FC-ADM-004"
    MEMBERSHIP_CHANGED = "FC-ADM-005"
    SCHEDULE_CHANGED = "FC-ADM-006"  # created, changed, paused or resumed
    SCHEDULE_SLOTS_SKIPPED = "FC-ADM-007"
    CHECKPOINT_SEALED = "FC-AUD-001"
    SIGNING_KEY_IN_SERVICE = "FC-AUD-002"
