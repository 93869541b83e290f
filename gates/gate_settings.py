"""Validation of a `gate` block (approval step, flag rule, or POST …/gates)."""

from .input_schema import input_schema_problem

DEFAULTS = {
    "required_approvals": 1,
    "approver_group": "approvers",
    "expires_in": 3 * 24 * 3600,
    "on_timeout": "reject",
    "escalate_to": "",
    "input_schema": None,
}
MAX_APPROVALS = 20
MAX_EXPIRES_IN = 90 * 24 * 3600
MAX_GROUP_LENGTH = 150  # Gate.approver_group and Gate.escalate_to


class GateSettingsError(ValueError):
    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def gate_settings_clean(raw: dict | None) -> dict:
    """Defaults filled in and every field checked; raises GateSettingsError with field errors.

    `expires_in: null` means the gate never expires; that has to be said explicitly.
    """
    if raw is not None and not isinstance(raw, dict):
        raise GateSettingsError({"gate": "an object of settings"})
    raw = dict(raw or {})
    unknown = set(raw) - set(DEFAULTS)
    errors = {key: "unknown setting" for key in sorted(unknown)}
    clean = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}
    n = clean["required_approvals"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_APPROVALS:
        errors["required_approvals"] = f"an integer from 1 to {MAX_APPROVALS}"
    if not _group_name(clean["approver_group"]):
        errors["approver_group"] = f"a group name of at most {MAX_GROUP_LENGTH} characters"
    exp = clean["expires_in"]
    if exp is not None and (not isinstance(exp, int) or isinstance(exp, bool)
                            or not 1 <= exp <= MAX_EXPIRES_IN):
        errors["expires_in"] = f"seconds from 1 to {MAX_EXPIRES_IN}, or null for never"
    if clean["on_timeout"] not in ("reject", "escalate"):
        errors["on_timeout"] = "reject or escalate"
    escalate_to = clean["escalate_to"]
    if escalate_to != "" and not _group_name(escalate_to):
        errors["escalate_to"] = f"a group name of at most {MAX_GROUP_LENGTH} characters"
    elif clean["on_timeout"] == "escalate" and not escalate_to:
        errors["escalate_to"] = "required when on_timeout is escalate"
    schema = clean["input_schema"]
    if schema is not None:
        problem = input_schema_problem(schema)
        if problem:
            errors["input_schema"] = problem
    if errors:
        raise GateSettingsError(errors)
    return clean


def gate_block_problem(raw) -> str | None:
    """The first fault of a gate block as `key: message`, or None when it is usable."""
    try:
        gate_settings_clean(raw)
    except GateSettingsError as exc:
        key = next(iter(exc.errors))
        return f"{key}: {exc.errors[key]}"
    return None


def _group_name(value) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_GROUP_LENGTH
