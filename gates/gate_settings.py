"""Validation of a `gate` block (approval step, flag rule, or POST …/gates)."""

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

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


class GateSettingsError(ValueError):
    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def gate_settings_clean(raw: dict | None) -> dict:
    """Defaults filled in and every field checked; raises GateSettingsError with field errors.

    `expires_in: null` means the gate never expires; that has to be said explicitly.
    """
    raw = dict(raw or {})
    unknown = set(raw) - set(DEFAULTS)
    errors = {key: "unknown setting" for key in sorted(unknown)}
    clean = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}
    n = clean["required_approvals"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_APPROVALS:
        errors["required_approvals"] = f"an integer from 1 to {MAX_APPROVALS}"
    if not isinstance(clean["approver_group"], str) or not clean["approver_group"].strip():
        errors["approver_group"] = "a group name"
    exp = clean["expires_in"]
    if exp is not None and (not isinstance(exp, int) or isinstance(exp, bool)
                            or not 1 <= exp <= MAX_EXPIRES_IN):
        errors["expires_in"] = f"seconds from 1 to {MAX_EXPIRES_IN}, or null for never"
    if clean["on_timeout"] not in ("reject", "escalate"):
        errors["on_timeout"] = "reject or escalate"
    if clean["on_timeout"] == "escalate" and not clean["escalate_to"]:
        errors["escalate_to"] = "required when on_timeout is escalate"
    if not isinstance(clean["escalate_to"], str):
        errors["escalate_to"] = "a group name"
    schema = clean["input_schema"]
    if schema is not None:
        if not isinstance(schema, dict):
            errors["input_schema"] = "a JSON Schema object"
        else:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                errors["input_schema"] = f"not a valid JSON Schema: {exc.message}"
    if errors:
        raise GateSettingsError(errors)
    return clean


def gate_input_errors(schema: dict, value) -> dict:
    """Field errors of `value` against the gate's input schema ({} when valid)."""
    validator = Draft202012Validator(schema)
    errors = {}
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
        path = "/".join(str(p) for p in error.path) or "input"
        errors.setdefault(path, error.message)
    return errors
