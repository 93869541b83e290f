"""The bytes that are hashed. Pure functions; no Django.

Event hash (DESIGN §7):
    hash = sha256(ascii(prev_hash) + JCS({stream, seq, code, actor, at, data})).hexdigest()

JCS is RFC 8785 through the `rfc8785` package, never `json.dumps`.
"""

import hashlib
from datetime import UTC, datetime

import rfc8785

GENESIS_HASH = "0" * 64


def canonical(value) -> bytes:
    """RFC 8785 canonical JSON bytes of a JSON value."""
    return rfc8785.dumps(value)


MAX_SAFE_INTEGER = 2**53 - 1


def jcs_problem(value, path: str = "$") -> str | None:
    """Why `value` cannot be hashed as RFC 8785 JSON (None when it can).

    JCS follows I-JSON: integers must be within ±(2**53 - 1) and numbers finite.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            return f"{path}: integer outside ±(2**53 - 1); send it as a string"
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else f"{path}: not finite"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = jcs_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: keys must be strings"
            problem = jcs_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    return f"{path}: {type(value).__name__} is not JSON"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_hash(value) -> str:
    """sha256 of the JCS of a JSON value (receipts' input_hash and output_hash)."""
    return sha256_hex(canonical(value))


def event_hash(*, prev_hash: str, stream: str, seq: int, code: str, actor: str, at: str,
               data: dict) -> str:
    body = {"stream": stream, "seq": seq, "code": code, "actor": actor, "at": at, "data": data}
    return sha256_hex(prev_hash.encode("ascii") + canonical(body))


def format_at(moment: datetime) -> str:
    """The one string form of an event time: UTC, microseconds, `Z` (what the API returns)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
