"""Policy evaluation: pure functions over a context. No database.

Combination (DESIGN §6): any deny → deny; else any flag → flag; else allow. Anything that
goes wrong while evaluating a rule — a parse error, a missing attribute, a type error, a
result that is not a boolean — is a `deny` with reason `policy_error: …` (fail-closed).

Rules are CEL (`common-expression-language`). CEL has no cost limit in that binding, so what
a rule may do is bounded when it is saved: it may only read the documented context
variables, comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`) are
refused, and length and nesting depth are capped. A decision that still runs past its time
limit denies the rules it did not reach.
"""

import fnmatch
import functools
import re
import time
from dataclasses import dataclass, field

import cel

from audit.hashing import jcs_problem
from gates.gate_settings import gate_block_problem

CONTEXT_VARIABLES = frozenset({"run", "step", "input", "actor", "tenant", "now"})
EFFECTS = ("allow", "flag", "deny")
_SEVERITY = {"allow": 0, "flag": 1, "deny": 2}
MAX_RULE_LENGTH = 2000
MAX_NESTING = 12
TIME_LIMIT_S = 0.05  # per decision; the binding cannot be interrupted, so it is checked after
                     # each rule, and static limits keep one rule far below it


class RuleError(ValueError):
    """A rule that cannot be saved; `line` and `column` point at the fault when known."""

    def __init__(self, message: str, *, rule_id: str = "", line: int | None = None,
                 column: int | None = None):
        self.rule_id, self.line, self.column = rule_id, line, column
        where = f" at line {line}, column {column}" if line else ""
        prefix = f"rule '{rule_id}': " if rule_id else ""
        super().__init__(f"{prefix}{message}{where}")


_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
_STRING = re.compile(  # CEL string literals: triple-quoted first, then single-line
    r'[rR]?("""[\s\S]*?"""' r"|'''[\s\S]*?'''" r'|"(?:\\.|[^"\\])*"' r"|'(?:\\.|[^'\\])*')")
_MACRO = re.compile(r"\.\s*(all|exists|exists_one|map|filter)\s*\(")


def _nesting(expression: str) -> int:
    """Deepest nesting of (), [] and {} outside string literals."""
    depth = deepest = 0
    for char in _STRING.sub('""', expression):
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


def _comprehension_macro(expression: str) -> str | None:
    """The first comprehension macro used outside string literals, if any."""
    match = _MACRO.search(_STRING.sub('""', expression))
    return match.group(1) if match else None


@functools.lru_cache(maxsize=4096)
def compile_rule(expression: str) -> cel.Program:
    """Compile a CEL expression once; cached by its source text."""
    return cel.compile(expression)


@functools.lru_cache(maxsize=4096)
def rule_variables(expression: str) -> frozenset:
    """The context variables an expression reads (static analysis, cached)."""
    return frozenset(compile_rule(expression).variables())


def check_expression(expression: str, *, rule_id: str = "") -> None:
    """Raise RuleError unless `expression` compiles and reads only context variables."""
    if not isinstance(expression, str) or not expression.strip():
        raise RuleError("'when' must be a non-empty CEL expression", rule_id=rule_id)
    if len(expression) > MAX_RULE_LENGTH:
        raise RuleError(f"expression longer than {MAX_RULE_LENGTH} characters", rule_id=rule_id)
    if _nesting(expression) > MAX_NESTING:
        raise RuleError(f"nesting deeper than {MAX_NESTING} levels", rule_id=rule_id)
    try:
        program = compile_rule(expression)
    except (ValueError, RuntimeError) as exc:
        match = _POSITION.search(str(exc))
        if match:
            line, column, text = int(match[1]), int(match[2]), match[3].splitlines()[0]
            raise RuleError(text, rule_id=rule_id, line=line, column=column) from None
        raise RuleError(str(exc).splitlines()[0], rule_id=rule_id) from None
    macro = _comprehension_macro(expression)
    if macro:
        raise RuleError(f"comprehension macros are not allowed ('{macro}'): CEL has no "
                        "cost limit here", rule_id=rule_id)
    unknown = sorted(set(program.variables()) - CONTEXT_VARIABLES)
    if unknown:
        raise RuleError(
            f"unknown variable(s) {', '.join(unknown)}; rules may read only "
            f"{', '.join(sorted(CONTEXT_VARIABLES))} (comprehension macros are not allowed)",
            rule_id=rule_id,
        )


def validate_rules(rules) -> list[dict]:
    """Validate and normalise a policy's rules; raise RuleError at the first fault."""
    if not isinstance(rules, list):
        raise RuleError("rules must be a list")
    problem = jcs_problem(rules)
    if problem:
        raise RuleError(f"rules cannot be stored: {problem}")
    seen, clean = set(), []
    for position, rule in enumerate(rules, start=1):
        if not isinstance(rule, dict):
            raise RuleError(f"rule #{position} must be an object")
        rule_id = str(rule.get("id") or "").strip()
        if not rule_id:
            raise RuleError(f"rule #{position} has no id")
        if rule_id in seen:
            raise RuleError("duplicate rule id", rule_id=rule_id)
        seen.add(rule_id)
        effect = rule.get("effect")
        if effect not in EFFECTS:
            raise RuleError(f"effect must be one of {', '.join(EFFECTS)}", rule_id=rule_id)
        check_expression(rule.get("when"), rule_id=rule_id)
        item = {"id": rule_id, "effect": effect, "when": rule["when"],
                "reason": str(rule.get("reason") or rule_id)}
        gate = rule.get("gate")
        if gate is not None:
            if effect != "flag" or not isinstance(gate, dict):
                raise RuleError("'gate' is an object on a flag rule only", rule_id=rule_id)
            problem = gate_block_problem(gate)
            if problem:
                raise RuleError(f"gate.{problem}", rule_id=rule_id)
            item["gate"] = gate  # as given: the step's own gate settings fill the rest
        clean.append(item)
    return clean


def validate_tier(tier) -> int:
    if not isinstance(tier, int) or isinstance(tier, bool) or not 0 <= tier <= 100:
        raise RuleError("tier must be an integer from 0 to 100")
    return tier


def validate_applies_to(applies_to) -> dict:
    applies_to = applies_to or {}
    if not isinstance(applies_to, dict) or set(applies_to) - {"workflows", "step_types"}:
        raise RuleError("applies_to takes 'workflows' and 'step_types' lists of patterns")
    clean = {}
    for key in ("workflows", "step_types"):
        patterns = applies_to.get(key, ["*"])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise RuleError(f"applies_to.{key} must be a list of patterns")
        clean[key] = patterns
    return clean


@dataclass(frozen=True)
class PolicySnapshot:
    """What evaluation needs of one policy version."""

    policy_id: int
    name: str
    version: int
    tier: int
    applies_to: dict
    rules: tuple

    def applies(self, workflow: str, step_type: str) -> bool:
        wf = self.applies_to.get("workflows", ["*"])
        st = self.applies_to.get("step_types", ["*"])
        return (any(fnmatch.fnmatchcase(workflow, p) for p in wf)
                and any(fnmatch.fnmatchcase(step_type, p) for p in st))


@dataclass
class Decision:
    decision: str
    reason: str
    policy_id: int | None = None
    policy_version: int | None = None
    tier: int | None = None
    rules_triggered: list = field(default_factory=list)
    policies: list = field(default_factory=list)
    gate: dict = field(default_factory=dict)
    evaluation_us: int = 0

    @property
    def policy_versions(self) -> list[dict]:
        return [{"policy_id": p["policy_id"], "version": p["version"]} for p in self.policies]


def _run_rule(rule: dict, variables: cel.Context) -> bool:
    result = compile_rule(rule["when"]).execute(variables)
    if not isinstance(result, bool):
        raise TypeError(f"rule returned {type(result).__name__}, not a boolean")
    return result


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such attribute {exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _rule_outcome(policy: PolicySnapshot, rule, variables: cel.Context,
                  deadline: float, time_limit_s: float) -> dict | None:
    """What one rule contributes: None when it does not fire. A rule that cannot be
    evaluated as stored (a bad expression, effect or gate block) fires as a deny."""
    rule_id = rule.get("id", "?") if isinstance(rule, dict) else "?"
    fired = {"policy": policy.name, "policy_id": policy.policy_id, "rule": rule_id,
             "tier": policy.tier, "gate": {}}
    try:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"time limit of {time_limit_s * 1000:.0f} ms exceeded")
        if not isinstance(rule, dict) or not rule.get("id"):
            raise TypeError("a rule is an object with an id")
        if rule.get("effect") not in EFFECTS:
            raise ValueError(f"unknown effect {rule.get('effect')!r}")
        if not _run_rule(rule, variables):
            return None
        gate = rule.get("gate")
        if rule["effect"] == "flag" and gate is not None:
            problem = gate_block_problem(gate)  # a block stored before it was checked
            if problem:
                raise ValueError(f"gate settings: {problem}")
            fired["gate"] = gate
        return {**fired, "effect": rule["effect"], "reason": rule.get("reason") or rule_id}
    except Exception as exc:  # any evaluation failure denies (fail-closed)
        return {**fired, "effect": "deny",
                "reason": f"policy_error: {policy.name}/{rule_id}: {_describe(exc)}"}


def evaluate(policies: list[PolicySnapshot], context: dict, *,
             time_limit_s: float = TIME_LIMIT_S) -> Decision:
    """Decide for one step. `policies` are the applicable, enabled policy versions.

    The context is converted once for all rules, and only the variables they read
    (converting costs more than running the rules). Past `time_limit_s` every rule not yet
    evaluated denies with `policy_error: time limit …`. Never raises: whatever goes wrong
    is a `deny` with reason `policy_error: …`."""
    started = time.perf_counter()
    try:
        decision = _evaluate(policies, context, started, time_limit_s)
    except Exception as exc:  # fail-closed: a decision is never an exception
        decision = Decision(decision="deny", reason=f"policy_error: {_describe(exc)}"[:1000])
    decision.evaluation_us = int((time.perf_counter() - started) * 1_000_000)
    return decision


def _evaluate(policies: list[PolicySnapshot], context: dict, started: float,
              time_limit_s: float) -> Decision:
    deadline = started + time_limit_s
    try:
        needed = set().union(*(rule_variables(r["when"]) for p in policies for r in p.rules))
    except Exception:  # a rule that no longer compiles or is malformed: fails closed below
        needed = set(context)
    variables = cel.Context({k: v for k, v in context.items() if k in needed})
    results, fired = [], []
    for policy in policies:
        effect = "allow"
        for rule in policy.rules:
            outcome = _rule_outcome(policy, rule, variables, deadline, time_limit_s)
            if outcome is not None:
                fired.append(outcome)
                if _SEVERITY[outcome["effect"]] > _SEVERITY[effect]:
                    effect = outcome["effect"]
        results.append({"policy_id": policy.policy_id, "name": policy.name,
                        "version": policy.version, "tier": policy.tier, "effect": effect})
    final = max((r["effect"] for r in results), key=_SEVERITY.__getitem__, default="allow")
    winners = [f for f in fired if f["effect"] == final]
    deciding = max((r for r in results if r["effect"] == final),
                   key=lambda r: (r["tier"], r["name"]), default=None)
    if winners:
        reason = "; ".join(dict.fromkeys(w["reason"] for w in winners))
    elif results:
        reason = "no rule fired"
    else:
        reason = "no applicable policy"
    gate = {}
    for w in winners:  # the strictest gate settings among the flag rules that fired
        for key, value in w["gate"].items():
            if key == "required_approvals":
                gate[key] = max(gate.get(key, 0), value)
            else:
                gate.setdefault(key, value)
    return Decision(
        decision=final, reason=reason[:1000],
        policy_id=deciding["policy_id"] if deciding else None,
        policy_version=deciding["version"] if deciding else None,
        tier=deciding["tier"] if deciding else None,
        rules_triggered=[{k: v for k, v in f.items() if k != "gate"} for f in fired],
        policies=results, gate=gate,
    )
