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
