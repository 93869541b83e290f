"""Workflow definitions: validating a step graph and publishing immutable versions."""

import re
from graphlib import CycleError, TopologicalSorter
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from audit.codes import Code
from audit.hashing import json_hash
from audit.services import admin_stream_name, audit_append
from fcore.errors import BadRequest, ErrorCode
from fcore.jsonlimits import json_problem
from gates.gate_settings import GateSettingsError, gate_settings_clean

from .expression_checks import output_check, step_language_check
from .expressions import ExpressionError, key_text
from .models import WorkflowDefinition

STEP_TYPES = ("noop", "external", "external:<name>", "approval", "http", "sleep",
              "workflow", "python:<dotted.path>")
PYTHON_PREFIX = "python:"
EXTERNAL = "external"
# `external:<name>`: an external step executors claim by its type (DESIGN §12)
EXTERNAL_TYPE = re.compile(r"external(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99})?")
STEP_KEYS = {"id", "type", "after", "gate", "input", "config", "timeout_s", "retry", "name",
             "url", "seconds", "when", "map", "max_concurrency", "workflow", "version"}
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_ATTEMPTS = 20
# Step ids travel in URL paths (`…/steps/{step_id}`) and in audit data: no `/`, `%`, `?`,
# `#`, brackets or spaces, and never `.` or `..` alone.
STEP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def is_internal(step_type: str) -> bool:
    """Executed by a worker (as opposed to an external executor or a gate)."""
    return step_type in ("noop", "http", "sleep") or step_type.startswith(PYTHON_PREFIX)


def is_external(step_type: str) -> bool:
    """Executed outside FC and reported through the API: `external` or `external:<name>`."""
    return step_type == EXTERNAL or (step_type.startswith("external:")
                                     and EXTERNAL_TYPE.fullmatch(step_type) is not None)


def _url_matches(url: str, allowed: str) -> bool:
    target, entry = urlsplit(url), urlsplit(allowed)
    if target.username is not None or target.password is not None:
        return False  # user@host URLs are refused outright
    return (target.scheme == entry.scheme and target.hostname == entry.hostname
            and (entry.port is None or target.port == entry.port)
            and target.path.startswith(entry.path))


def http_url_allowed(url) -> bool:
    """An `http` step may only call a URL on the allow-list (settings.FCORE_HTTP_ALLOWED_URLS:
    scheme, host, optional port and path prefix; no port in an entry means any port)."""
    try:
        return isinstance(url, str) and any(
            _url_matches(url, allowed) for allowed in settings.FCORE_HTTP_ALLOWED_URLS)
    except ValueError:  # an unparseable URL or port
        return False


def python_handler_allowed(step_type: str) -> bool:
    path = step_type[len(PYTHON_PREFIX):]
    return bool(_DOTTED.match(path)) and path in settings.FCORE_STEP_HANDLERS


def _number(value, *, low: float, high: float) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and low <= value <= high)


def _type_problem(step: dict) -> str | None:
    step_type = step.get("type")
    if not isinstance(step_type, str):
        return f"type must be one of {', '.join(STEP_TYPES)}, not {step_type!r}"
    if step_type.startswith(PYTHON_PREFIX):
        if not python_handler_allowed(step_type):
            return (f"handler {step_type[len(PYTHON_PREFIX):]!r} is not registered "
                    "(settings.FCORE_STEP_HANDLERS)")
        return None
    if step_type.startswith("external:") and not is_external(step_type):
        return (f"an external type is external:<name> (letters, digits, _ . -), "
                f"not {step_type!r}")
    if step_type not in STEP_TYPES and not is_external(step_type):
        return f"type must be one of {', '.join(STEP_TYPES)}, not {step_type!r}"
    if step_type == "http" and not http_url_allowed(step.get("url")):
        return ("url must be on the allow-list "
                f"(settings.FCORE_HTTP_ALLOWED_URLS), not {step.get('url')!r}")
    if step_type == "sleep" and not _number(step.get("seconds"), low=0, high=MAX_TIMEOUT_S):
        return f"seconds must be a number from 0 to {MAX_TIMEOUT_S}"
    for key, only in (("url", "http"), ("seconds", "sleep"), ("workflow", "workflow"),
                      ("version", "workflow")):
        if key in step and step_type != only:
            return f"only {only} steps take {key}"
    if step_type == "workflow":
        return _child_problem(step)
    return None


def _child_problem(step: dict) -> str | None:
    """A `type: workflow` step names the child workflow (and may pin its version); the
    child's deadline is its own steps', so it takes no timeout_s."""
    name, version = step.get("workflow"), step.get("version")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        return "workflow: the name of the child workflow (up to 200 characters) is required"
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)
                                or version < 1):
        return "version must be a positive integer"
    if "timeout_s" in step:
        return "a workflow step takes no timeout_s: the child run's steps have their own"
    return None


def retry_clean(retry) -> dict:
    """`{max_attempts, backoff, max_backoff}` with defaults 3, 1.0 s and 60 s."""
    if not isinstance(retry, dict):
        raise DefinitionError("retry must be an object {max_attempts, backoff, max_backoff}")
    unknown = set(retry) - {"max_attempts", "backoff", "max_backoff"}
    if unknown:
        raise DefinitionError(f"retry: unknown key(s) {', '.join(sorted(unknown))}")
    clean = {"max_attempts": retry.get("max_attempts", 3), "backoff": retry.get("backoff", 1.0),
             "max_backoff": retry.get("max_backoff", 60.0)}
    attempts = clean["max_attempts"]
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not (
            1 <= attempts <= MAX_ATTEMPTS):
        raise DefinitionError(f"retry.max_attempts must be an integer from 1 to {MAX_ATTEMPTS}")
    if not _number(clean["backoff"], low=0, high=3600):
        raise DefinitionError("retry.backoff must be a number of seconds from 0 to 3600")
    if not _number(clean["max_backoff"], low=clean["backoff"], high=MAX_TIMEOUT_S):
        raise DefinitionError("retry.max_backoff must be a number of seconds, at least backoff")
    return clean


class DefinitionError(ValueError):
    """A workflow definition that cannot be published, with the step at fault; `key` is
    where in the definition (e.g. ("steps", 1, "input", "amount")) when known."""

    def __init__(self, message: str, *, key: tuple = ()):
        self.key = key
        super().__init__(message)


def steps_validate(steps) -> list[dict]:
    """Normalise a step list: ids unique, known types, `after` (default: the previous step)
    naming known steps, no cycle. Raises DefinitionError with a clear message."""
    if not isinstance(steps, list) or not steps:
        raise DefinitionError("steps must be a non-empty list")
    problem = json_problem(steps)
    if problem:
        raise DefinitionError(f"steps cannot be stored: {problem}")
    clean, ids = [], []
    for position, step in enumerate(steps, start=1):
        try:
            clean.append(_step_clean(step, position, ids))
        except DefinitionError as exc:
            raise DefinitionError(str(exc), key=exc.key or ("steps", position - 1)) from None
        ids.append(step["id"])
    _graph_check(clean, ids)
    _language_check(clean)
    return clean


def _step_clean(step, position: int, ids: list) -> dict:
    """One step entry checked and normalised (`ids`: the ids before it)."""
    if not isinstance(step, dict):
        raise DefinitionError(f"step #{position} must be an object")
    step_id = step.get("id")
    if not isinstance(step_id, str) or not step_id.strip():
        raise DefinitionError(f"step #{position} has no id")
    if not STEP_ID.fullmatch(step_id):
        raise DefinitionError(
            f"step #{position}: id {step_id[:120]!r} must be 1-100 letters, digits, '_', "
            "'-' or '.', starting with a letter, digit or '_'")
    where = f"step '{step_id}'"
    if step_id in ids:
        raise DefinitionError(f"{where}: duplicate id")
    unknown = set(step) - STEP_KEYS
    if unknown:
        raise DefinitionError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    step_type = step.get("type")
    problem = _type_problem(step)
    if problem:
        raise DefinitionError(f"{where}: {problem}")
    after = step.get("after", [ids[-1]] if ids else [])
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise DefinitionError(f"{where}: after must be a list of step ids")
    item = {"id": step_id, "type": step_type, "after": after}
    if "input" in step:
        if not isinstance(step["input"], dict):
            raise DefinitionError(f"{where}: input must be an object")
        item["input"] = step["input"]
    for key in ("config", "url", "seconds", "workflow", "version"):
        if key in step:
            item[key] = step[key]
    if "timeout_s" in step:
        if step_type == "approval":
            raise DefinitionError(f"{where}: an approval step's deadline is its gate's "
                                  "expires_in, not timeout_s")
        if not _number(step["timeout_s"], low=0.001, high=MAX_TIMEOUT_S):
            raise DefinitionError(
                f"{where}: timeout_s must be a number of seconds up to {MAX_TIMEOUT_S}")
        item["timeout_s"] = step["timeout_s"]
    if "retry" in step:
        if step_type == "approval":
            raise DefinitionError(f"{where}: approval steps are not retried")
        try:
            item["retry"] = retry_clean(step["retry"])
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: {exc}") from None
    if step_type == "approval" or "gate" in step:
        if step_type != "approval":
            raise DefinitionError(f"{where}: only approval steps take a gate block")
        try:
            item["gate"] = gate_settings_clean(step.get("gate"))
        except GateSettingsError as exc:
            raise DefinitionError(f"{where}: gate: {exc}") from None
    for key in ("when", "map", "max_concurrency"):
        if key in step:
            item[key] = step[key]
    if "map" in step and step_type == "approval":
        raise DefinitionError(f"{where}: map: an approval step cannot be mapped",
                              key=("steps", position - 1, "map"))
    return item


def _graph_check(clean: list[dict], ids: list[str]) -> None:
    known = set(ids)
    graph = {}
    for item in clean:
        missing = [a for a in item["after"] if a not in known]
        if missing:
            raise DefinitionError(f"step '{item['id']}': after names unknown step(s) "
                                  f"{', '.join(missing)}")
        graph[item["id"]] = set(item["after"])
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise DefinitionError(f"the steps form a cycle: {' -> '.join(exc.args[1])}") from None


def upstream_of(clean: list[dict]) -> dict[str, frozenset]:
    """Every step's upstream steps: those reachable through `after` (transitively)."""
    after = {item["id"]: item["after"] for item in clean}
    upstream: dict[str, frozenset] = {}

    def visit(step_id: str) -> frozenset:
        if step_id not in upstream:
            found = set()
            for parent in after[step_id]:
                found |= {parent} | visit(parent)
            upstream[step_id] = frozenset(found)
        return upstream[step_id]

    for step_id in after:
        visit(step_id)
    return upstream


def _language_check(clean: list[dict]) -> None:
    """Expressions, `when` and `map` of every step, against the steps upstream of it."""
    upstream, known = upstream_of(clean), frozenset(item["id"] for item in clean)
    for position, item in enumerate(clean):
        try:
            step_language_check(item, upstream=upstream[item["id"]], known=known)
        except ExpressionError as exc:
            raise DefinitionError(f"step '{item['id']}': {key_text(exc.key)}: {exc}",
                                  key=("steps", position, *exc.key)) from None


def output_validate(output, steps: list[dict]) -> None:
    """A workflow's `output` (JSON, with expressions over every step); DefinitionError."""
    problem = json_problem(output)
    if problem:
        raise DefinitionError(f"output cannot be stored: {problem}", key=("output",))
    try:
        output_check(output, known=frozenset(item["id"] for item in steps))
    except ExpressionError as exc:
        raise DefinitionError(f"{key_text(exc.key)}: {exc}", key=exc.key) from None


def definition_publish(*, tenant, name: str, steps, actor: str, description: str = "",
                       output=None) -> tuple[WorkflowDefinition, bool]:
    """Publish `steps` (and the workflow's `output`, when given) as the next version of
    `name`, unless identical to the latest. Returns (definition, created); a new version
    records `FC-ADM-002`."""
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError("a workflow needs a name")
    clean = steps_validate(steps)
    spec = {"steps": clean}
    if output is not None:
        output_validate(output, clean)
        spec["output"] = output
    spec_hash = json_hash(spec)
    with transaction.atomic():
        latest = (WorkflowDefinition.objects.select_for_update()
                  .filter(tenant=tenant, name=name).order_by("-version").first())
        if latest and latest.spec_hash == spec_hash:
            return latest, False
        definition = WorkflowDefinition.objects.create(
            tenant=tenant, name=name, version=(latest.version if latest else 0) + 1,
            description=description, steps=clean, output=output, spec_hash=spec_hash,
            created_by=actor)
        audit_append(
            tenant_id=tenant.id, stream=admin_stream_name(tenant.slug),
            code=Code.DEFINITION_PUBLISHED, actor=actor,
            data={"workflow": name, "version": definition.version, "spec_hash": spec_hash,
                  "steps": [s["id"] for s in clean]},
        )
    return definition, True


def definition_current(tenant, workflow: str, version: int | None = None
                       ) -> WorkflowDefinition:
    """The tenant's definition `workflow` at `version`, or its newest; a 400
    `unknown_workflow` when there is none."""
    found = WorkflowDefinition.objects.filter(tenant_id=tenant.id, name=workflow)
    if version is not None:
        found = found.filter(version=version)
    definition = found.order_by("-version").first()
    if definition is None:
        raise unknown_workflow(workflow, version)
    return definition


def unknown_workflow(workflow: str, version: int | None) -> BadRequest:
    """The 400 `unknown_workflow` for a workflow (at a version) the tenant does not have."""
    return BadRequest(f"Unknown workflow {workflow!r}"
                      + (f" version {version}" if version is not None else "") + ".",
                      code=ErrorCode.UNKNOWN_WORKFLOW, errors={"workflow": ["unknown workflow"]})


def step_config(spec: dict) -> dict:
    """What a step run keeps of its definition entry besides id, type and after."""
    return {k: v for k, v in spec.items() if k not in ("id", "type", "after")}
