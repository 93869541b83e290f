"""A gate's `input_schema` (JSON Schema 2020-12): what may be saved, and checking a vote's
input against it without reaching anything outside the schema.

Invariants, held by the check at save time and again before every vote (a schema stored
before the check is refused there, never evaluated):

- Nothing is ever fetched. The only references are `$ref` / `$dynamicRef` of `#` plus a
  JSON pointer to a subschema of the same schema; `$id`, anchors and another `$schema` are
  refused, so the base URI cannot move; and the validator's registry refuses every
  retrieval, should a reference get through anyway.
- No reference cycle that consumes no input (`"$ref": "#"` at the root; two definitions
  that refer to each other through `allOf`): evaluation always terminates.
- Every regular expression (`pattern`, `patternProperties`) is evaluated by RE2, in time
  linear in the input; one RE2 cannot compile (backreferences, look-around) is refused.
  jsonschema evaluates `patternProperties` with Python's backtracking engine when it
  collects the properties `unevaluatedProperties` has to look at, so that pair is refused.
"""

import functools
import graphlib
from urllib.parse import unquote

import orjson
import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_SUBSCHEMAS = 1000
MAX_MESSAGE = 500
REFUSED_KEYWORDS = ("$id", "$anchor", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")
REFERENCES = ("$ref", "$dynamicRef")
# Where 2020-12 keeps subschemas, and whether each applies to the same instance (a loop
# through those never ends) or to a part of it (recursion that consumes input).
ONE = {"not": True, "if": True, "then": True, "else": True, "items": False,
       "contains": False, "additionalProperties": False, "propertyNames": False,
       "unevaluatedItems": False, "unevaluatedProperties": False, "contentSchema": False}
MANY = {"allOf": True, "anyOf": True, "oneOf": True, "prefixItems": False}
NAMED = {"dependentSchemas": True, "properties": False, "patternProperties": False,
         "$defs": False, "definitions": False}


class InputSchemaError(ValueError):
    """A schema that cannot be used to check a vote's input."""


def _retrieve_nothing(uri: str):
    raise NoSuchResource(ref=uri)


NOTHING_RETRIEVED = Registry(retrieve=_retrieve_nothing)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is an answer, not a log line


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str):
    return re2.compile(pattern, _RE2_OPTIONS)


def _matches(pattern: str, text: str) -> bool:
    return _regex(pattern).search(text) is not None


def _regex_problem(pattern) -> str | None:
    try:
        _regex(pattern)
    except re2.error as exc:
        detail = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc)
        return f"pattern {pattern!r} is not supported (linear-time RE2 syntax): {detail}"
    return None


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, patterns, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator, extra_schema, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    named, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    extras = sorted(k for k in instance
                    if k not in named and not any(_matches(p, k) for p in patterns))
    if validator.is_type(extra_schema, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif extra_schema is False and extras:
        verb = "was" if len(extras) == 1 else "were"
        listed = ", ".join(repr(k) for k in extras)
        yield ValidationError(f"Additional properties are not allowed ({listed} {verb} "
                              "unexpected)")


# Draft 2020-12 with every regular expression evaluated by RE2.
InputValidator = validators.extend(Draft202012Validator, {
    "pattern": _pattern, "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties})


def _pointer(tokens: tuple) -> str:
    return "#" + "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _target(reference) -> tuple | None:
    """The JSON pointer tokens of a local reference (`#` or `#/…`), else None."""
    if not isinstance(reference, str) or not reference.startswith("#"):
        return None
    fragment = unquote(reference[1:])
    if not fragment:
        return ()
    if not fragment.startswith("/"):
        return None
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in fragment[1:].split("/"))


def _children(node: dict):
    """(key path, subschema, applies to the same instance) for each subschema of `node`."""
    for key, value in node.items():
        if key in ONE:
            yield (key,), value, ONE[key]
        elif key in MANY and isinstance(value, list):
            for i, each in enumerate(value):
                yield (key, str(i)), each, MANY[key]
        elif key in NAMED and isinstance(value, dict):
            for name, each in value.items():
                yield (key, name), each, NAMED[key]


def _walk(schema: dict) -> tuple[dict, dict, list]:
    """Every subschema by pointer, the same-instance edges, and the references found.

    Raises InputSchemaError for what is refused on sight."""
    nodes, same_instance, references = {}, {}, []
    stack = [((), schema, 0)]
    while stack:
        tokens, node, depth = stack.pop()
        nodes[tokens] = node
        same_instance[tokens] = set()
        if len(nodes) > MAX_SUBSCHEMAS:
            raise InputSchemaError(f"more than {MAX_SUBSCHEMAS} subschemas")
        if depth > MAX_DEPTH:
            raise InputSchemaError(f"subschemas nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict):
            continue
        where = _pointer(tokens)
        for key in REFUSED_KEYWORDS:
            if key in node:
                raise InputSchemaError(f"{key} at {where} is not allowed: references may "
                                       "only point into this schema with '#/…'")
        if "$schema" in node and (tokens or node["$schema"] != DIALECT):
            raise InputSchemaError(f"$schema at {where} may only be {DIALECT!r}, at the root")
        for key in REFERENCES:
            if key in node:
                references.append((tokens, key, node[key]))
        for path, child, same in _children(node):
            child_tokens = tokens + path
            if same:
                same_instance[tokens].add(child_tokens)
            stack.append((child_tokens, child, depth + 1))
    return nodes, same_instance, references


def _reference_problems(nodes: dict, same_instance: dict, references: list) -> str | None:
    for tokens, key, reference in references:
        target = _target(reference)
        if target is None:
            return (f"{key} {reference!r} at {_pointer(tokens)} is not allowed: only "
                    "'#' or '#/…' into this schema, nothing is fetched")
        if target not in nodes:
            return (f"{key} {reference!r} at {_pointer(tokens)} does not point at a "
                    "subschema of this schema")
        same_instance[tokens].add(target)
    try:
        graphlib.TopologicalSorter(same_instance).prepare()
    except graphlib.CycleError as exc:
        loop = " → ".join(_pointer(t) for t in reversed(exc.args[1]))
        return f"reference cycle that consumes no input: {loop}"
    return None


def _uses(nodes: dict, keyword: str) -> bool:
    return any(isinstance(n, dict) and keyword in n for n in nodes.values())


def _problem(schema: dict) -> str | None:
    try:
        size = len(orjson.dumps(schema))
    except (orjson.JSONEncodeError, TypeError) as exc:
        return f"not storable as JSON: {exc}"
    if size > MAX_BYTES:
        return f"larger than {MAX_BYTES} bytes"
    try:
        nodes, same_instance, references = _walk(schema)
    except InputSchemaError as exc:
        return str(exc)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    for node in nodes.values():
        if not isinstance(node, dict):
            continue
        for pattern in [node["pattern"]] if "pattern" in node else []:
            if problem := _regex_problem(pattern):
                return problem
        for pattern in node.get("patternProperties", {}):
            if problem := _regex_problem(pattern):
                return problem
    if _uses(nodes, "unevaluatedProperties") and _uses(nodes, "patternProperties"):
        return ("unevaluatedProperties cannot be combined with patternProperties here "
                "(that pair would be evaluated with a backtracking regex engine)")
    return _reference_problems(nodes, same_instance, references)


@functools.lru_cache(maxsize=256)
def _problem_of_text(text: bytes) -> str | None:
    return _problem(orjson.loads(text))


def input_schema_problem(schema) -> str | None:
    """Why `schema` cannot be a gate's input schema, or None when it can."""
    if not isinstance(schema, dict):
        return "a JSON Schema object"
    try:  # cached by content: evaluation checks every flag rule's gate block it fires
        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        return f"not storable as JSON: {exc}"
    return _problem_of_text(text)


def input_schema_errors(schema, value) -> dict:
    """Field errors of `value` against a gate's input schema ({} when valid); raises
    InputSchemaError when the schema itself cannot be used (one stored before the check)."""
    problem = input_schema_problem(schema)
    if problem:
        raise InputSchemaError(problem)
    validator = InputValidator(schema, registry=NOTHING_RETRIEVED)
    try:
        found = list(validator.iter_errors(value))
    except Unresolvable:  # refused on save; kept so that nothing is ever fetched
        raise InputSchemaError("a reference could not be resolved inside the schema") from None
    except RecursionError:
        return {"input": "the input, or the schema's chain of references, is nested too "
                         "deeply to be checked"}
    errors = {}
    for error in sorted(found, key=lambda e: [str(p) for p in e.path]):
        path = "/".join(str(p) for p in error.path) or "input"
        message = error.message  # it quotes the input: a long one keeps its two ends
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE // 2] + " … " + message[-MAX_MESSAGE // 2:]
        errors.setdefault(path, message)
    return errors
