"""RFC 8785 (JCS) canonical JSON, fast where that is proven byte-identical. Pure; no Django.

`canonical(value)` returns exactly the bytes `rfc8785.dumps(value)` returns (or raises what
it raises). It takes a fast path through orjson (`OPT_SORT_KEYS | OPT_STRICT_INTEGER`) only
for values in a subset where the two serialisers agree byte for byte:

- no floats anywhere: JCS prints numbers the ECMAScript way (`1.0` → `1`), orjson does not;
- integers within ±(2**53 − 1): `OPT_STRICT_INTEGER` makes orjson refuse anything larger
  (JCS refuses it too, so that value falls back to `rfc8785` and raises there);
- only exact `dict`, `list`, `str`, `int`, `bool` and `None` (no subclasses, tuples, enums);
- object keys without a character at or above U+E000: JCS sorts keys by UTF-16 code units,
  orjson by code points, and the two orders differ only between a character in
  U+E000–U+FFFF and one above U+FFFF (a surrogate pair sorts below U+E000 in UTF-16);
- strings: both escape `"`, `\\`, `\\b \\f \\n \\r \\t` and the other controls below U+0020
  as `\\u00xx` (lower-case hex), and write everything else — DEL, U+2028, U+2029, non-ASCII,
  astral characters — as UTF-8. A string with a lone surrogate makes orjson raise; that
  value falls back to `rfc8785`, which raises too.

Anything outside the subset goes through `rfc8785`. `tests/audit/test_jcs.py` checks the
equality on a corpus and with hypothesis.
"""

import json

import orjson
import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1
# What canonicalising a stored value may raise: rfc8785 refuses it (ValueError, TypeError,
# OverflowError), or it nests beyond Python's recursion limit (a pre-limit server stored
# such values, and the audit trail cannot be repaired).
CANONICAL_ERRORS = (ValueError, TypeError, OverflowError, RecursionError)
# Readers walk stored values recursively (serialisers, rfc8785, the pack's round trip);
# this much nesting is safe for all of them. Accepted input is bounded well below it
# (FCORE_JSON_MAX_DEPTH, at most 100, plus the few levels an event wraps around it).
STORED_MAX_DEPTH = 128
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_KEY_LIMIT = "\ue000"


def fast_safe(value) -> bool:
    """True when orjson's sorted output is proven identical to RFC 8785 for `value`."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key, default="") < _KEY_LIMIT):
                return False
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if not fast_safe(item):
                return False
        return True
    if kind is list:
        for item in value:
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if not fast_safe(item):
                return False
        return True
    return kind is str or kind is int or kind is bool or value is None


def canonical(value) -> bytes:
    """RFC 8785 canonical JSON bytes of `value` (orjson on the safe subset, else rfc8785)."""
    if fast_safe(value):
        try:
            return orjson.dumps(value, option=_OPTIONS)
        except orjson.JSONEncodeError:  # integer beyond 2**53 - 1, lone surrogate
            pass
    return rfc8785.dumps(value)


def unreadable(value) -> str | None:
    """Why a stored value cannot be read and hashed (None when it can): too deep for the
    readers, or refused by RFC 8785 (lone surrogate, integer beyond 2**53 - 1, …)."""
    stack = [(value, 0)]
    while stack:  # iterative: the value may be nested deeper than the recursion limit
        item, depth = stack.pop()
        if type(item) in (list, dict):
            if depth >= STORED_MAX_DEPTH:
                return f"nested deeper than {STORED_MAX_DEPTH} levels"
            stack.extend((v, depth + 1) for v in (item.values() if type(item) is dict
                                                   else item))
    try:
        canonical(restore_floats(value))  # as every reader hashes it (see loads_stored)
    except CANONICAL_ERRORS as exc:
        return f"cannot be canonicalised ({type(exc).__name__}: {exc})"
    return None


def canonical_reference(value) -> bytes:
    """The reference implementation, for tests and the offline verifier's `--slow` mode."""
    return rfc8785.dumps(value)


def _int_or_float(text: str):
    number = int(text)
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return number
    # PostgreSQL's jsonb keeps numbers as `numeric` and prints 1e+21 as
    # 1000000000000000000000. Integers beyond 2**53 - 1 are never accepted (jcs_problem),
    # so such a number was a float when it was hashed: give it back as that float.
    try:
        return float(number)
    except OverflowError:  # not a double either: leave it for rfc8785 to refuse
        return number


def loads_stored(text):
    """Parse JSON text as stored by the database, restoring what was hashed.

    orjson first; on anything it refuses (NaN, integers beyond 64 bits) the standard
    library with the jsonb integer rule above. Already-parsed values pass through
    `restore_floats`.
    """
    if not isinstance(text, str | bytes):
        return restore_floats(text)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_int=_int_or_float)
    return restore_floats(value) if _has_big_int(value) else value


def _has_big_int(value) -> bool:
    kind = type(value)
    if kind is int:
        return not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if kind is dict:
        return any(_has_big_int(v) for v in value.values() if type(v) in (int, dict, list))
    if kind is list:
        return any(_has_big_int(v) for v in value if type(v) in (int, dict, list))
    return False


def restore_floats(value):
    """Integers beyond ±(2**53 − 1) back to floats (see `_int_or_float`); a copy."""
    kind = type(value)
    if kind is int:
        return _int_or_float(str(value)) if _has_big_int(value) else value
    if kind is dict:
        return {k: restore_floats(v) for k, v in value.items()}
    if kind is list:
        return [restore_floats(v) for v in value]
    return value
