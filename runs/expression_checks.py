"""Checking a definition's expressions when it is published (DESIGN §11): what each
expression reads (`run`, upstream `steps` only, `item`/`index` in a map step), and the
type of `when` (boolean) and `map` (list) where it can be known without running them (a
constant or a literal). Raises ExpressionError with the key at fault; the expressions
themselves are compiled and evaluated by `runs.expressions`."""

import cel
from django.conf import settings

from .expressions import (
    VARIABLES,
    Expression,
    ExpressionError,
    expression_compile,
    literal_kind,
    template_compile,
)


def _check_steps(expression: Expression, key: tuple, *, upstream, known) -> None:
    for step_id in sorted(expression.steps):
        if step_id not in known:
            raise ExpressionError(f"reads steps.{step_id}, but there is no step {step_id!r}",
                                  key=key)
        if step_id not in upstream:
            raise ExpressionError(f"reads steps.{step_id}, which is not upstream of this step "
                                  "(not reachable through after)", key=key)


def _constant(expression: Expression):
    """The value of an expression that reads no variable, or None when it fails (it fails
    again at run time, with the step)."""
    if expression.variables:
        return None
    try:
        return expression.program.execute(cel.Context({}))
    except Exception:  # noqa: BLE001 - a constant that fails is reported when it runs
        return None


def _typed(spec: dict, key: str, wanted: str, *, upstream, known) -> Expression:
    try:
        expression = expression_compile(spec[key], variables=VARIABLES - {"item", "index"})
    except ExpressionError as exc:
        raise ExpressionError(str(exc), key=(key,)) from None
    _check_steps(expression, (key,), upstream=upstream, known=known)
    kind = literal_kind(expression.source)
    value = _constant(expression)
    if wanted == "bool":
        wrong = kind is not None or (value is not None and not isinstance(value, bool))
    else:
        wrong = kind in ("map", "string") or (value is not None and not isinstance(value, list))
    if wrong:
        shown = kind or type(value).__name__
        raise ExpressionError(f"must be a {'boolean' if wanted == 'bool' else 'list'} "
                              f"expression, not a {shown}", key=(key,))
    return expression


def step_language_check(spec: dict, *, upstream: frozenset, known: frozenset) -> None:
    """Check a step's expressions, `when`, `map` and `max_concurrency` against the steps
    upstream of it (`upstream`) and in its workflow (`known`); raises ExpressionError with
    the key at fault."""
    if "when" in spec:
        _typed(spec, "when", "bool", upstream=upstream, known=known)
    if "map" in spec:
        _typed(spec, "map", "list", upstream=upstream, known=known)
    if "max_concurrency" in spec:
        limit = spec["max_concurrency"]
        if "map" not in spec:
            raise ExpressionError("only map steps take max_concurrency", key=("max_concurrency",))
        if not isinstance(limit, int) or isinstance(limit, bool) or not (
                1 <= limit <= settings.FCORE_MAP_MAX_ITEMS):
            raise ExpressionError("must be an integer from 1 to FCORE_MAP_MAX_ITEMS "
                                  f"({settings.FCORE_MAP_MAX_ITEMS})", key=("max_concurrency",))
    variables = VARIABLES if "map" in spec else VARIABLES - {"item", "index"}
    _, found = template_compile(spec.get("input"), key=("input",), variables=variables)
    for key, expression in found:
        _check_steps(expression, key, upstream=upstream, known=known)


def output_check(output, *, known: frozenset) -> None:
    """Check a workflow's `output` (any JSON; strings starting with `=` are expressions
    over `run` and every step of the workflow); raises ExpressionError."""
    _, found = template_compile(output, key=("output",), variables=VARIABLES - {"item", "index"})
    for key, expression in found:
        _check_steps(expression, key, upstream=known, known=known)
