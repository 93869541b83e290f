"""Offline checks of an evidence pack's `log` section and its attestation (used by
`audit.verify_pack`). Pure; no Django.

- `log`: the C2SP signed note verifies with a trusted key under the log's origin and
  states the section's origin, tree size and root; the leaf is the run's stream head
  (the pack's last event); its inclusion proof leads to that root (0 <= leaf_index <
  tree_size); and, given a checkpoint the auditor kept earlier, the log still extends it
  (equal roots at equal sizes, else `log.consistency` verifies between the two trees).
- `attestation`: a DSSE envelope signed by a trusted key, whose payload is the in-toto
  statement that `audit.statement` computes from the pack, field by field.

Unknown fields are refused everywhere, in the legacy `checkpoint` section too.
"""

import base64
import binascii
import json
from datetime import datetime

from . import dsse, merkle, merkle_log, note, signing
from .jcs import CANONICAL_ERRORS, canonical
from .statement import STATEMENT_FIELDS, statement

LOG_FIELDS = {"origin", "tree_size", "root_hash", "checkpoint", "leaf_index", "leaf",
              "inclusion_proof"}
LEAF_FIELDS = {"stream", "seq", "hash"}
CHECKPOINT_FIELDS = {"format", "tenant", "seq", "prev_hash", "root", "tree_size", "at",
                     "key_id", "hash", "signature", "public_key", "proof"}
PROOF_FIELDS = {"leaf_index", "leaf", "audit_path"}


class LogFailure(Exception):
    """(path, problem) of the first thing wrong; `audit.verify_pack` names it."""

    def __init__(self, path: str, problem: str):
        super().__init__(path, problem)
        self.path, self.problem = path, problem


def exact_fields(value, allowed: set, path: str, optional: set = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise LogFailure(path, "missing or not an object")
    extra = sorted(set(value) - allowed - optional)
    if extra:
        raise LogFailure(f"{path}.{extra[0]}", "is not a field of the format")
    missing = sorted(allowed - set(value))
    if missing:
        raise LogFailure(f"{path}.{missing[0]}", "is missing")
    return value


def check_checkpoint_fields(checkpoint: dict) -> None:
    """The legacy JSON checkpoint, its proof and leaf: no field outside the format."""
    exact_fields(checkpoint, CHECKPOINT_FIELDS, "checkpoint")
    exact_fields(checkpoint["proof"], PROOF_FIELDS, "checkpoint.proof")
    exact_fields(checkpoint["proof"]["leaf"], LEAF_FIELDS, "checkpoint.proof.leaf")


def _hashes(values, path: str) -> list[bytes]:
    if not isinstance(values, list):
        raise LogFailure(path, "missing or not a list")
    nodes = []
    for k, value in enumerate(values):
        try:
            node = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
        except (binascii.Error, ValueError):
            node = b""
        if len(node) != 32:
            raise LogFailure(f"{path}[{k}]", "is not a base64 sha256 hash")
        nodes.append(node)
    return nodes


def _signed(text, origin: str, keys: dict[str, bytes], path: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a note with a valid signature by one of `keys`."""
    if not isinstance(text, str):
        raise LogFailure(path, "missing or not a signed note")
    problem = "no signature by a trusted key"
    for public in keys.values():
        try:
            body = note.note_verify(text, origin, public)
        except note.BadNote as exc:
            problem = str(exc)
            continue
        try:
            return note.checkpoint_parse(body)
        except note.BadNote as exc:
            raise LogFailure(path, str(exc)) from None
    raise LogFailure(path, f"{problem} (key name {origin})")


def kept_read(text: str) -> tuple[str, int, bytes]:
    """(origin, size, root) as a kept checkpoint states them (unverified)."""
    try:
        return note.checkpoint_parse(note.note_split(text)[0])
    except note.BadNote as exc:
        raise LogFailure("--since-checkpoint", f"cannot be read: {exc}") from None


def check_log(pack: dict, events: list[dict], keys: dict[str, bytes],
              kept: str | None = None) -> str:
    log = exact_fields(pack.get("log"), LOG_FIELDS, "log", optional={"consistency"})
    tenant = pack["run"].get("tenant_id")
    origin = log["origin"]
    if not isinstance(origin, str) or not origin.endswith(f"/{tenant}"):
        raise LogFailure("log.origin", "is not the log of the run's tenant")
    stated = _signed(log["checkpoint"], origin, keys, "log.checkpoint")
    root = _hashes([log["root_hash"]], "log.root_hash")[0]
    if stated != (origin, log["tree_size"], root):
        raise LogFailure("log.checkpoint", "does not state log.origin, log.tree_size and "
                                           "log.root_hash")
    leaf = exact_fields(log["leaf"], LEAF_FIELDS, "log.leaf")
    last = events[-1] if events else {}
    if leaf != {"stream": pack["stream"].get("name"), "seq": last.get("seq"),
                "hash": last.get("hash")}:
        raise LogFailure("log.leaf", "is not the head of the pack's stream")
    index, size = log["leaf_index"], log["tree_size"]
    if type(index) is not int or type(size) is not int or not 0 <= index < size:
        raise LogFailure("log.leaf_index", "must satisfy 0 <= leaf_index < tree_size")
    proof = _hashes(log["inclusion_proof"], "log.inclusion_proof")
    if not merkle_log.inclusion_valid(merkle.leaf_hash(leaf), index, size, proof, root):
        raise LogFailure("log.inclusion_proof", "does not lead from log.leaf to the root")
    line = f"log {origin}: leaf {index} included in the signed tree of {size}"
    if kept is not None:
        line += "; " + _check_kept(log, kept, origin, size, root, keys)
    return line


def _check_kept(log: dict, kept: str, origin: str, size: int, root: bytes,
                keys: dict[str, bytes]) -> str:
    kept_origin, kept_size, kept_root = kept_read(kept)
    if kept_origin != origin:
        raise LogFailure("--since-checkpoint", f"is of log {kept_origin}, not {origin}")
    _signed(kept, origin, keys, "--since-checkpoint")
    if kept_size == size:
        if kept_root != root:
            raise LogFailure("log.checkpoint", "has another root than the kept checkpoint "
                                               "of the same size: history was rewritten")
        return f"the same tree as the kept checkpoint of size {kept_size}"
    consistency = log.get("consistency")
    if consistency is None:
        raise LogFailure("log.consistency", f"missing: fetch the pack with "
                                            f"?since={kept_size}")
    exact_fields(consistency, {"size", "proof"}, "log.consistency")
    if consistency["size"] != kept_size:
        raise LogFailure("log.consistency.size", f"is not the kept size {kept_size}")
    proof = _hashes(consistency["proof"], "log.consistency.proof")
    (first, first_root), (second, second_root) = sorted(
        [(kept_size, kept_root), (size, root)], key=lambda pair: pair[0])
    if not merkle_log.consistency_valid(first, second, first_root, second_root, proof):
        raise LogFailure("log.consistency", f"the tree of {second} does not extend the "
                                            f"tree of {first}: history was rewritten")
    return f"consistent with the kept checkpoint of size {kept_size}"


def check_attestation(pack: dict, keys: dict[str, bytes]) -> str:
    envelope = pack.get("attestation")
    try:
        body, key_id = dsse.envelope_open(envelope, keys)
    except dsse.BadEnvelope as exc:
        raise LogFailure("attestation", str(exc)) from None
    if envelope["payloadType"] != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise LogFailure("attestation.payloadType", f"expected {dsse.IN_TOTO_PAYLOAD_TYPE}")
    try:
        expected = statement(pack)
        if body == canonical(expected):  # what FC signs: nothing to tell apart
            return _attested(expected, key_id)
    except CANONICAL_ERRORS as exc:
        raise LogFailure("pack", f"cannot be canonicalised ({exc})") from None
    try:
        signed = json.loads(body)
    except ValueError:
        raise LogFailure("attestation.payload", "is not JSON") from None
    exact_fields(signed, STATEMENT_FIELDS, "attestation.payload")
    fields = signed["predicate"].get("fields") if isinstance(signed["predicate"], dict) \
        else None
    if not isinstance(fields, dict):
        raise LogFailure("attestation.payload.predicate.fields", "missing or not an object")
    for path, digest in expected["predicate"]["fields"].items():
        if path not in fields:
            raise LogFailure(path, "is not in the signed attestation (added after signing)")
        if fields[path] != digest:
            raise LogFailure(path, "differs from the signed attestation")
    for path in fields:
        if path not in expected["predicate"]["fields"]:
            raise LogFailure(path, "is missing (the signed attestation lists it)")
    for key in ("_type", "subject", "predicateType"):
        if signed[key] != expected[key]:
            raise LogFailure(f"attestation.payload.{key}", "is not the pack's")
    for key, value in expected["predicate"].items():
        if signed["predicate"].get(key) != value:
            raise LogFailure(f"attestation.payload.predicate.{key}", "differs from the pack")
    if set(signed["predicate"]) != set(expected["predicate"]):
        raise LogFailure("attestation.payload.predicate", "has fields outside the format")
    return _attested(expected, key_id)


def _attested(expected: dict, key_id: str) -> str:
    return (f"attestation: in-toto statement of run {expected['subject'][0]['name']} "
            f"({len(expected['predicate']['fields'])} fields) in a DSSE envelope signed by "
            f"key {key_id}")


def pack_keys(pack: dict, pinned: list[bytes]) -> dict[str, bytes]:
    """The keys to trust: the pinned ones, else the checkpoint's (already checked)."""
    if pinned:
        return {signing.key_id(raw): raw for raw in pinned}
    raw = signing.public_key_parse(pack["checkpoint"]["public_key"])
    return {signing.key_id(raw): raw}


def keys_read(text: str) -> tuple[list[bytes], dict[str, datetime]]:
    """(public keys, {key id: retired_at}) of a saved `GET /workflows/audit/keys` answer."""
    try:
        rows = json.loads(text)
        keys, retired = [], {}
        for row in rows:
            raw = signing.public_key_parse(row["public_key"])
            keys.append(raw)
            if row.get("retired_at"):
                retired[signing.key_id(raw)] = datetime.fromisoformat(row["retired_at"])
    except (ValueError, TypeError, KeyError, signing.BadKey) as exc:
        raise LogFailure("--keys", f"is not a saved GET /workflows/audit/keys answer ({exc})") \
            from None
    return keys, retired


def check_retired(checkpoint: dict, retired: dict[str, datetime]) -> None:
    """A checkpoint dated after its key's `retired_at` is refused."""
    when = retired.get(checkpoint["key_id"])
    if when is None:
        return
    try:
        signed_at = datetime.fromisoformat(checkpoint["at"])
    except (TypeError, ValueError):
        raise LogFailure("checkpoint.at", "is not a time") from None
    if signed_at > when:
        raise LogFailure("checkpoint.at", f"is after key {checkpoint['key_id']} was retired "
                                          f"({when.isoformat()})")
