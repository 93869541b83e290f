"""Expressions in workflow definitions (DESIGN §11): CEL over the data of a run.

A string in a step's `input` (at any depth) or in a workflow's `output` that starts with
`=` is a CEL expression; one that starts with `==` is the literal text after the first
`=`. A step's `when` (boolean) and `map` (list) are CEL without the `=`.

Context: `run` (`id`, `workflow`, `input`), `steps.<id>` (`output`, `status`) for the
step's upstream steps only (reachable through `after`), and `item`, `index` inside a map
step's input. A step is read as `steps.<id>` or `steps["<id>"]` (ids with `-` or `.`), so
which steps an expression reads is known when the definition is validated, and a step
that is not upstream is refused then.

Bounded like policy rules (`gates.policies`): the binding has no cost limit, so
comprehension macros are refused, length and nesting are capped, and the time an input
takes is checked after each expression. Everything that goes wrong at run time — a
missing key, a wrong type, a result that is not JSON, the time limit — raises
`ExpressionFailed`; the engine then fails the step with `expression_error` (not retried)
and the run fails closed. Results must be JSON: null, bool, int, double, string, list,
map with string keys (a CEL `uint` becomes an int; bytes, timestamps and durations are
refused). Money stays an integer of minor units as long as the expression keeps it one.

Compiled plans are kept on the definition instance (`definition_plan`): definitions are
immutable, and a step with no expression, `when` or `map` has no plan, so the engine does
nothing more for it than before.
"""

import functools
import re
import time
from dataclasses import dataclass

import cel
from django.conf import settings

from fcore.jsonlimits import json_problem

VARIABLES = frozenset({"run", "steps", "item", "index"})
STEP_FIELDS = frozenset({"output", "status"})
MAX_LENGTH = 2000
MAX_NESTING = 12
LANGUAGE_KEYS = ("input", "when", "map", "max_concurrency")

_STRING = re.compile(
    r'[rRbB]{0,2}("""[\s\S]*?"""' r"|'''[\s\S]*?'''" r'|"(?:\\.|[^"\\])*"' r"|'(?:\\.|[^'\\])*')")
_MACRO = re.compile(r"\.\s*(all|exists|exists_one|map|filter)\s*\(")
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
_STEP_DOT = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(\s*\.\s*(\w+))?")
_STEP_INDEX = re.compile(r"(?<![\w.])steps\s*\[\s*(\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')"
                         r"\s*\](\s*\.\s*(\w+))?")
_STEPS_WORD = re.compile(r"(?<![\w.])steps\b")


class ExpressionError(ValueError):
    """An expression that cannot be published; `key` is where in the step it sits (a
    tuple of keys and list positions, e.g. ("input", "amount"))."""

    def __init__(self, message: str, *, key: tuple = ()):
        self.key = key
        super().__init__(message)


class ExpressionFailed(RuntimeError):
    """An expression that failed at run time (code `expression_error`)."""

    code = "expression_error"


def key_text(key: tuple) -> str:
    """("input", "to", 0) → 'input.to[0]'."""
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> cel.Program:
    return cel.compile(source)


def _blank_strings(source: str) -> str:
    """The source with every string literal's content blanked (same length)."""
    return _STRING.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1],
                       source)


def step_references(source: str) -> frozenset:
    """The step ids an expression reads (`steps.<id>`, `steps["<id>"]`); raises
    ExpressionError for any other use of `steps` or a field other than output/status."""
    blank = _blank_strings(source)
    found, spans = set(), []
    for match in _STEP_DOT.finditer(blank):
        found.add(match.group(1))
        spans.append(match.start())
        if match.group(3) is not None and match.group(3) not in STEP_FIELDS:
            raise ExpressionError(f"steps.{match.group(1)}.{match.group(3)}: a step has only "
                                  "output and status")
    for match in _STEP_INDEX.finditer(blank):
        literal = source[match.start(1):match.end(1)]
        found.add(literal[1:-1].encode().decode("unicode_escape"))
        spans.append(match.start())
        if match.group(3) is not None and match.group(3) not in STEP_FIELDS:
            raise ExpressionError(f"steps[{literal}].{match.group(3)}: a step has only "
                                  "output and status")
    for match in _STEPS_WORD.finditer(blank):
        if match.start() not in spans:
            raise ExpressionError("steps is read only as steps.<id> or steps[\"<id>\"]")
    return frozenset(found)


@dataclass(frozen=True)
class Expression:
    """One compiled expression: its source, program, variables and the steps it reads."""

    source: str
    program: cel.Program
    variables: frozenset
    steps: frozenset


def _closing(blank: str, start: int) -> int:
    depth = 0
    for n in range(start, len(blank)):
        depth += blank[n] in "([{"
        depth -= blank[n] in ")]}"
        if depth == 0:
            return n
    return -1


def literal_kind(source: str) -> str | None:
    """'list', 'map' or 'string' when the whole expression is such a literal (its type is
    known without running it), else None."""
    blank = _blank_strings(source).strip()
    if not blank:
        return None
    if blank[0] in "[{" and _closing(blank, 0) == len(blank) - 1:
        return "list" if blank[0] == "[" else "map"
    match = _STRING.fullmatch(source.strip())
    return "string" if match else None


def expression_compile(source, *, variables: frozenset = VARIABLES) -> Expression:
    """Compile a CEL expression and check what it may read; raises ExpressionError."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be a non-empty CEL text")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    blank = _blank_strings(source)
    depth = deepest = 0
    for char in blank:
        depth += char in "([{"
        depth -= char in ")]}"
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise ExpressionError(f"nesting deeper than {MAX_NESTING} levels")
    macro = _MACRO.search(blank)
    if macro:
        raise ExpressionError(f"comprehension macros are not allowed ('{macro.group(1)}'): "
                              "CEL has no cost limit here")
    try:
        program = _compiled(source)
    except (ValueError, RuntimeError) as exc:
        match = _POSITION.search(str(exc))
        text = (f"{match[3].splitlines()[0]} at expression line {match[1]}, column {match[2]}"
                if match else str(exc).splitlines()[0])
        hint = " (when and map take CEL without a leading '=')" if source.startswith("=") else ""
        raise ExpressionError(f"expression does not parse: {text}{hint}") from None
    used = frozenset(program.variables())
    unknown = sorted(used - variables)
    if unknown:
        raise ExpressionError(f"unknown variable(s) {', '.join(unknown)}; this expression may "
                              f"read only {', '.join(sorted(variables))}")
    return Expression(source=source, program=program, variables=used,
                      steps=step_references(source) if "steps" in used else frozenset())


# --- templates: a step's input, a workflow's output --------------------------------------

@dataclass(frozen=True)
class Template:
    """A JSON value with expressions in it (`value` holds Expression leaves) and every
    expression it holds."""

    value: object
    expressions: tuple

    @property
    def variables(self) -> frozenset:
        return frozenset().union(*(e.variables for e in self.expressions))

    @property
    def steps(self) -> frozenset:
        return frozenset().union(*(e.steps for e in self.expressions))


def _template_value(value, key: tuple, variables: frozenset, found: list):
    if isinstance(value, str) and value.startswith("="):
        if value.startswith("=="):
            return value[1:]
        try:
            expression = expression_compile(value[1:], variables=variables)
        except ExpressionError as exc:
            raise ExpressionError(str(exc), key=key) from None
        found.append((key, expression))
        return expression
    if isinstance(value, dict):
        return {k: _template_value(v, (*key, k), variables, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_template_value(v, (*key, n), variables, found) for n, v in enumerate(value)]
    return value


def _escapes(value) -> bool:
    if isinstance(value, str):
        return value.startswith("=")
    if isinstance(value, dict):
        return any(_escapes(v) for v in value.values())
    if isinstance(value, list):
        return any(_escapes(v) for v in value)
    return False


def template_compile(value, *, key: tuple, variables: frozenset = VARIABLES
                     ) -> tuple[Template | None, list]:
    """(template, [(key, expression)…]) for a value, or (None, []) when no string in it
    starts with `=` (it is used as it is)."""
    if not _escapes(value):
        return None, []
    found: list = []
    resolved = _template_value(value, key, variables, found)
    return Template(value=resolved, expressions=tuple(e for _, e in found)), found


# --- evaluation ---------------------------------------------------------------------------

def _json(value, where: str):
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return int(value)  # a CEL uint is an int subclass
    if isinstance(value, list | tuple):
        return [_json(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ExpressionFailed(f"{where}: a map result needs string keys")
        return {k: _json(v, where) for k, v in value.items()}
    raise ExpressionFailed(f"{where}: result of type {type(value).__name__} is not JSON")


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key {exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Evaluation:
    """The variables of one step's expressions, converted for CEL once, and the time
    limit (`FCORE_EXPRESSION_TIME_LIMIT_MS`) they share."""

    def __init__(self, variables: dict):
        try:
            self.context = cel.Context(variables)
        except Exception as exc:  # a value the binding cannot take fails closed
            raise ExpressionFailed(f"context: {_describe(exc)}") from None
        self.limit_s = settings.FCORE_EXPRESSION_TIME_LIMIT_MS / 1000
        self.deadline = time.perf_counter() + self.limit_s

    def run(self, expression: Expression, where: str):
        """The JSON result of one expression; raises ExpressionFailed."""
        try:
            result = expression.program.execute(self.context)
        except Exception as exc:  # any failure of an expression fails closed
            raise ExpressionFailed(f"{where}: {expression.source!r}: {_describe(exc)}") from None
        if time.perf_counter() > self.deadline:
            raise ExpressionFailed(f"{where}: time limit of {self.limit_s * 1000:.0f} ms "
                                   "exceeded")
        return _json(result, where)

    def fill(self, template: Template, where: str):
        """The template with every expression replaced by its result."""
        def walk(value, key):
            if isinstance(value, Expression):
                return self.run(value, key_text((where, *key)))
            if isinstance(value, dict):
                return {k: walk(v, (*key, k)) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, (*key, n)) for n, v in enumerate(value)]
            return value
        filled = walk(template.value, ())
        problem = json_problem(filled)
        if problem:
            raise ExpressionFailed(f"{where}: result cannot be stored: {problem}")
        return filled


def when_result(evaluation: Evaluation, expression: Expression) -> bool:
    """A `when` condition's result; anything but a boolean fails."""
    result = evaluation.run(expression, "when")
    if not isinstance(result, bool):
        raise ExpressionFailed(f"when: {expression.source!r} gave "
                               f"{type(result).__name__}, not a boolean")
    return result


def map_items(evaluation: Evaluation, expression: Expression) -> list:
    """A `map`'s list of items; anything but a list fails."""
    result = evaluation.run(expression, "map")
    if not isinstance(result, list):
        raise ExpressionFailed(f"map: {expression.source!r} gave "
                               f"{type(result).__name__}, not a list")
    problem = json_problem(result)
    if problem:
        raise ExpressionFailed(f"map: items cannot be stored: {problem}")
    return result


# --- plans -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepPlan:
    """What the engine evaluates for one step: its input template, `when`, `map` and
    `max_concurrency` (None when absent), and every step they read."""

    input: Template | None
    when: Expression | None
    map: Expression | None
    max_concurrency: int | None
    steps: frozenset
    variables: frozenset


def step_plan_build(spec: dict) -> StepPlan | None:
    """The plan of a validated step entry, or None when it has no expression."""
    item_vars = VARIABLES if "map" in spec else VARIABLES - {"item", "index"}
    template, _ = template_compile(spec.get("input"), key=("input",), variables=item_vars)
    outer = VARIABLES - {"item", "index"}
    when = expression_compile(spec["when"], variables=outer) if "when" in spec else None
    mapped = expression_compile(spec["map"], variables=outer) if "map" in spec else None
    if template is None and when is None and mapped is None:
        return None
    parts = [p for p in (template, when, mapped) if p is not None]
    return StepPlan(input=template, when=when, map=mapped,
                    max_concurrency=spec.get("max_concurrency"),
                    steps=frozenset().union(*(p.steps for p in parts)),
                    variables=frozenset().union(*(p.variables for p in parts)))


@dataclass(frozen=True)
class DefinitionPlan:
    """The plans of a definition's steps that have one, and its output template."""

    steps: dict
    output: Template | None


def definition_plan(definition) -> DefinitionPlan:
    """The compiled plan of a definition, built once per instance (definitions are
    immutable and the engine keeps their instances per process)."""
    plan = getattr(definition, "language_plan", None)
    if plan is None:
        steps = {}
        for spec in definition.steps:
            step = step_plan_build(spec)
            if step is not None:
                steps[spec["id"]] = step
        output, _ = template_compile(getattr(definition, "output", None), key=("output",),
                                     variables=VARIABLES - {"item", "index"})
        plan = definition.language_plan = DefinitionPlan(steps=steps, output=output)
    return plan

