"""Offline verifier of an evidence pack: `python -m audit.verify_pack PACK.json
[--public-key KEY …] [--since-checkpoint FILE]`. No Django, no database: the standard
library, `rfc8785`/`orjson` (through `audit.jcs`), `cryptography`, and the pure modules of
this package.

It checks, in this order, and stops at the first failure, which it names by its path in
the pack (`events[7].hash: does not match its content`), exiting 1:

0. no field is marked `unreadable` (a value the server stored before its input limits and
   cannot read or hash: the pack names it instead of failing to be produced);
1. every event: stream, numbering, link to the previous hash, hash recomputed, message;
   the `stream` head is the last event;
2. the run against its `FC-RUN-001` event (id, workflow, version, input hash, creator) and,
   when sealed, against its `FC-RUN-003` event (status, workflow_hash);
3. the receipt chain (every `receipt_hash` recomputed and linked, each recorded by an
   `FC-STEP-002/003` event), each step's input and output against its hashes, the
   `workflow_hash` recomputed from the last receipt, status and stream head;
4. "none" spelled null, and every fact bound to its event both ways (`audit.binding`):
   the run's status and output; each step's status, attempt, hashes, output and error;
   every decision against its `FC-POL-001` event; every gate against its `FC-GATE-001`
   event, its outcome (`FC-GATE-003/004/005`), its override and review (`FC-GATE-006`);
   every vote (approver, decision, comment, input) against its `FC-GATE-002` — a row
   with no event, an event with no row, or a row that disagrees with its event;
   every child run against the `FC-STEP-001` that started it (both ways), and the seal
   of a child whose step succeeded against that step's output;
5. the checkpoint: hash, Ed25519 signature (with `--public-key` if given, else the key in
   the pack — the output says which; a pack key other than the pinned one is refused),
   and the Merkle inclusion proof of the last event; no field outside the format;
6. the log (`audit.verify_log`): the C2SP signed note of the tenant's log, the inclusion
   proof of the run's head in it and, with `--since-checkpoint`, that the log still
   extends a checkpoint kept earlier;
7. the attestation: a DSSE envelope of the in-toto statement recomputed from the pack
   (every other field's digest).

Exit 0 when everything holds; 1 at the first failure; 2 when the file cannot be read.
The format is specified in docs/audit-format.md.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from . import merkle, signing
from .attestation import NOT_ATTESTED
from .binding import Unbound, check_bound, check_spelling
from .hashing import (
    CHECKPOINT_FORMAT,
    GENESIS_HASH,
    checkpoint_body,
    checkpoint_hash,
    event_hash,
    json_hash,
    receipt_hash,
    workflow_hash,
)
from .jcs import CANONICAL_ERRORS, canonical
from .messages import event_message
from .verify_log import (
    LogFailure,
    check_checkpoint_fields,
    check_log,
    check_retired,
    keys_read,
    pack_keys,
)
from .verify_log import check_attestation as check_envelope

PACK_FORMAT = "fc-evidence/2"
OLD_FORMATS = {"fc-evidence/1": "made before the standard log and attestation (see "
                                "docs/audit-format.md, Old packs and checkpoints)"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SECTIONS = {"run": dict, "definition": dict, "steps": list, "decisions": list,
             "gates": list, "events": list, "stream": dict, "receipts": list}


class Failure(Exception):
    """The first thing wrong with a pack, as `path: problem`."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")


def _need(value, kind, path: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Failure(path, f"missing or not {'an' if kind is int else 'a'} "
                            f"{getattr(kind, '__name__', 'value')}")
    return value


def _hashable(path: str, compute):
    try:
        return compute()
    except CANONICAL_ERRORS as exc:  # rfc8785 refuses the value, or it nests too deeply
        raise Failure(path, f"cannot be canonicalised ({type(exc).__name__}: {exc})") from None


def _unreadable(item, path: str) -> None:
    """A field the server could not read (`unreadable`: {field: reason}) is a failure."""
    if isinstance(item, dict) and item.get("unreadable"):
        reasons = item["unreadable"]
        field, reason = next(iter(reasons.items())) if isinstance(reasons, dict) and reasons \
            else ("", reasons)
        raise Failure(f"{path}.{field}" if field else path,
                      f"unreadable in the server's database ({reason})")


def check_unreadable(pack: dict) -> None:
    """Every field the server marked unreadable, events first (by its path in the pack)."""
    for i, event in enumerate(pack["events"]):
        _unreadable(event, f"events[{i}]")
    _unreadable(pack["run"], "run")
    for section in ("steps", "decisions", "gates"):
        for i, item in enumerate(pack[section]):
            _unreadable(item, f"{section}[{i}]")
            votes = item.get("approvals") if isinstance(item, dict) else None
            for a, vote in enumerate(votes if isinstance(votes, list) else []):
                _unreadable(vote, f"{section}[{i}].approvals[{a}]")


def check_events(pack: dict, run_id: str) -> list[dict]:
    events, name = pack["events"], pack["stream"].get("name")
    if name != f"run/{run_id}":
        raise Failure("stream.name", f"is not the stream of run {run_id}")
    prev = GENESIS_HASH
    for i, event in enumerate(events):
        path = f"events[{i}]"
        _need(event, dict, path)
        for key, kind in (("stream", str), ("seq", int), ("code", str), ("actor", str),
                          ("at", str), ("data", dict), ("prev_hash", str), ("hash", str)):
            _need(event.get(key), kind, f"{path}.{key}")
        if event["stream"] != name:
            raise Failure(f"{path}.stream", f"is not {name}")
        if event["seq"] != i + 1:
            raise Failure(f"{path}.seq", f"expected {i + 1}")
        if event["prev_hash"] != prev:
            raise Failure(f"{path}.prev_hash", "is not 64 zeros" if i == 0 else
                          f"does not link to events[{i - 1}].hash")
        fields = {k: event[k] for k in ("stream", "seq", "code", "actor", "at", "data")}
        digest = _hashable(f"{path}.data",
                           lambda f=fields, p=prev: event_hash(prev_hash=p, **f))
        if digest != event["hash"]:
            raise Failure(f"{path}.hash", "does not match its content")
        if "message" in event and event["message"] != event_message(event["code"],
                                                                    event["data"]):
            raise Failure(f"{path}.message", "is not the message of its code and data")
        prev = event["hash"]
    head = pack["stream"]
    if head.get("head_seq") != len(events):
        raise Failure("stream.head_seq", f"is not the last event's seq ({len(events)})")
    if head.get("head_hash") != (events[-1]["hash"] if events else None):
        raise Failure("stream.head_hash", "is not the last event's hash")
    return events


def _find(events, code: str, **match):
    return next(((i, e) for i, e in enumerate(events) if e["code"] == code and all(
        (e["actor"] if k == "actor" else e["data"].get(k)) == v for k, v in match.items())),
        (None, None))


def check_run(pack: dict, events: list[dict]) -> None:
    run, definition = pack["run"], pack["definition"]
    if not events or events[0]["code"] != "FC-RUN-001":
        raise Failure("events[0]", "is not the run's FC-RUN-001 event")
    created = events[0]["data"]
    for key, data_key in (("run_id", "run_id"), ("workflow", "workflow"),
                          ("workflow_version", "version"),
                          ("idempotency_key", "idempotency_key")):
        if run.get(key) != created.get(data_key):
            raise Failure(f"run.{key}", "differs from events[0] (FC-RUN-001)")
    if _hashable("run.input", lambda: json_hash(run.get("input"))) != created.get("input_hash"):
        raise Failure("run.input", "does not match the input_hash of events[0] (FC-RUN-001)")
    if run.get("created_by") != events[0]["actor"]:
        raise Failure("run.created_by", "is not the actor of events[0] (FC-RUN-001)")
    parent = created.get("parent")
    if run.get("parent") != ({"run_id": parent.get("run_id"), "step_id": parent.get("step_id")}
                             if isinstance(parent, dict) else None):
        raise Failure("run.parent", "differs from the parent in events[0] (FC-RUN-001)")
    if (definition.get("name"), definition.get("version")) != (run["workflow"],
                                                               run["workflow_version"]):
        raise Failure("definition", "is not the run's pinned workflow version")
    spec = _hashable("definition.steps", lambda: json_hash(
        {"steps": definition.get("steps"),  # a workflow's output is hashed with its steps
         **({"output": definition["output"]} if definition.get("output") is not None else {})}))
    if spec != definition.get("spec_hash"):
        raise Failure("definition.spec_hash", "does not match definition.steps")
    seals = [(i, e) for i, e in enumerate(events) if e["code"] == "FC-RUN-003"]
    if not seals:
        if pack.get("workflow_hash") is not None or run.get("workflow_hash"):
            raise Failure("workflow_hash", "is set but no FC-RUN-003 event seals the run")
        return
    i, seal = seals[-1]
    if run.get("status") != seal["data"].get("status"):
        raise Failure("run.status", f"differs from the status sealed in events[{i}]")
    if seal["data"].get("workflow_hash") != pack.get("workflow_hash"):
        raise Failure("workflow_hash", f"differs from the one sealed in events[{i}]")
    if run.get("workflow_hash") != pack.get("workflow_hash"):
        raise Failure("run.workflow_hash", "differs from workflow_hash")


def check_receipts(pack: dict, events: list[dict], run_id: str) -> None:
    prev, last_seq = GENESIS_HASH, 0
    for k, receipt in enumerate(pack["receipts"]):
        path = f"receipts[{k}]"
        _need(receipt, dict, path)
        seq = _need(receipt.get("receipt_seq"), int, f"{path}.receipt_seq")
        if seq <= last_seq:
            raise Failure(f"{path}.receipt_seq", "does not follow the previous receipt")
        if receipt.get("prev_receipt_hash") != prev:
            raise Failure(f"{path}.prev_receipt_hash", "is not 64 zeros" if k == 0 else
                          f"does not link to receipts[{k - 1}].receipt_hash")
        fields = {key: receipt.get(key) for key in (
            "step_id", "attempt", "input_hash", "output_hash", "decision", "policy_versions")}
        digest = _hashable(path, lambda f=fields, p=prev: receipt_hash(
            run_id=run_id, **f, prev_receipt_hash=p))
        if digest != receipt.get("receipt_hash"):
            raise Failure(f"{path}.receipt_hash", "does not match its fields")
        if _find(events, "FC-STEP-002", receipt_hash=digest)[1] is None and _find(
                events, "FC-STEP-003", receipt_hash=digest)[1] is None:
            raise Failure(path, "no FC-STEP-002/003 event records this receipt")
        prev, last_seq = digest, seq
    by_step = {(r["step_id"], r["attempt"]): r for r in pack["receipts"]}
    for j, step in enumerate(pack["steps"]):
        path = f"steps[{j}]"
        _need(step, dict, path)
        if not step.get("receipt_hash"):
            continue
        receipt = by_step.get((step.get("step_id"), step.get("attempt")))
        if receipt is None or receipt["receipt_hash"] != step["receipt_hash"]:
            raise Failure(f"{path}.receipt_hash", "is not in receipts")
        for key in ("input", "output"):
            expected = receipt[f"{key}_hash"]
            value = step.get(key)
            if expected and _hashable(f"{path}.{key}",
                                      lambda v=value: json_hash(v)) != expected:
                raise Failure(f"{path}.{key}", f"does not match the receipt's {key}_hash")
    seals = [e for e in events if e["code"] == "FC-RUN-003"]
    if seals:
        seal = seals[-1]
        expected = workflow_hash(run_id=run_id, status=pack["run"]["status"],
                                 last_receipt_hash=prev, stream=seal["stream"],
                                 head_seq=seal["seq"] - 1, head_hash=seal["prev_hash"])
        if expected != pack["workflow_hash"]:
            raise Failure("workflow_hash", "does not match the last receipt, the run's "
                                           "status and the stream head")


_CHILD_KEYS = ("run_id", "step_id", "attempt", "workflow", "version", "workflow_hash")


def check_children(pack: dict, events: list[dict]) -> None:
    """Each child run listed is the one an `FC-STEP-001` of the run started, and each
    child an `FC-STEP-001` started is listed; a child whose step succeeded has the seal
    that the step's output (bound by its output_hash) holds."""
    children = _need(pack.get("children", []), list, "children")
    started = [e for e in events if e["code"] == "FC-STEP-001" and e["data"].get("child_run_id")]
    outputs = {(st.get("step_id"), st.get("attempt")): st.get("output")
               for st in pack["steps"] if isinstance(st, dict) and st.get("status") == "succeeded"}
    for c, child in enumerate(children):
        path = f"children[{c}]"
        _need(child, dict, path)
        unknown = sorted(set(child) - set(_CHILD_KEYS))
        if unknown:
            raise Failure(f"{path}.{unknown[0]}", "is not a field of the format")
        match = {"child_run_id": child.get("run_id"), "step_id": child.get("step_id"),
                 "attempt": child.get("attempt"), "child_workflow": child.get("workflow"),
                 "child_version": child.get("version")}
        if _find(events, "FC-STEP-001", **match)[1] is None:
            raise Failure(path, "no FC-STEP-001 event started this child run")
        output = outputs.get((child.get("step_id"), child.get("attempt")))
        if isinstance(output, dict) and (output.get("run_id"), output.get("workflow_hash")) != (
                child.get("run_id"), child.get("workflow_hash")):
            raise Failure(f"{path}.workflow_hash", "is not the seal its step's output holds")
    listed = {child.get("run_id") for child in children}
    for event in started:
        if event["data"]["child_run_id"] not in listed:
            raise Failure(f"events[{event['seq'] - 1}]", "starts a child run that children "
                                                         "does not list")


def _trusted(pinned: list[bytes], key_id: str, pack_key, path: str) -> tuple[bytes, str]:
    """The key to verify a signature by `key_id`, and where it came from."""
    if pinned:
        for raw in pinned:
            if signing.key_id(raw) == key_id:
                if pack_key is not None and _parsed(pack_key) != raw:
                    raise Failure(f"{path}.public_key", "differs from the pinned key "
                                                        f"{key_id}")
                return raw, "--public-key"
        raise Failure(f"{path}.key_id", f"{key_id} is none of the keys given by --public-key")
    try:
        raw = signing.public_key_parse(_need(pack_key, str, f"{path}.public_key"))
    except signing.BadKey as exc:
        raise Failure(f"{path}.public_key", str(exc)) from None
    if signing.key_id(raw) != key_id:
        raise Failure(f"{path}.public_key", f"its id is {signing.key_id(raw)}, not the "
                                            f"key_id {key_id}")
    return raw, "the pack (not pinned: pass --public-key to pin it)"


def _parsed(text) -> bytes | None:
    try:
        return signing.public_key_parse(text) if isinstance(text, str) else None
    except signing.BadKey:
        return None


def check_checkpoint(pack: dict, events: list[dict], pinned: list[bytes]) -> str:
    checkpoint = pack.get("checkpoint")
    if checkpoint is None:
        raise Failure("checkpoint", f"missing ({pack.get('checkpoint_note') or 'no reason'})")
    _need(checkpoint, dict, "checkpoint")
    try:
        check_checkpoint_fields(checkpoint)
    except LogFailure as failure:
        raise Failure(failure.path, failure.problem) from None
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise Failure("checkpoint.format", f"expected {CHECKPOINT_FORMAT}")
    if checkpoint.get("tenant") != pack["run"].get("tenant_id"):
        raise Failure("checkpoint.tenant", "is not the run's tenant")
    body = checkpoint_body(**{k: checkpoint.get(k) for k in (
        "tenant", "seq", "prev_hash", "root", "tree_size", "at", "key_id")})
    if _hashable("checkpoint", lambda: checkpoint_hash(body)) != checkpoint.get("hash"):
        raise Failure("checkpoint.hash", "does not match its content")
    key, source = _trusted(pinned, str(checkpoint.get("key_id")), checkpoint.get("public_key"),
                           "checkpoint")
    if not signing.signature_valid(key, canonical(body), str(checkpoint.get("signature"))):
        raise Failure("checkpoint.signature", f"does not verify with key "
                                              f"{checkpoint['key_id']} (from {source})")
    proof = _need(checkpoint.get("proof"), dict, "checkpoint.proof")
    leaf = _need(proof.get("leaf"), dict, "checkpoint.proof.leaf")
    last = events[-1] if events else {}
    for key_name, value in (("stream", pack["stream"]["name"]), ("seq", last.get("seq")),
                            ("hash", last.get("hash"))):
        if leaf.get(key_name) != value:
            raise Failure(f"checkpoint.proof.leaf.{key_name}",
                          f"is not the {key_name} of the pack's last event")
    index = _need(proof.get("leaf_index"), int, "checkpoint.proof.leaf_index")
    path = []
    for k, node in enumerate(_need(proof.get("audit_path"), list, "checkpoint.proof.audit_path")):
        if not isinstance(node, str) or not _HEX64.fullmatch(node):
            raise Failure(f"checkpoint.proof.audit_path[{k}]", "is not a sha256 hex digest")
        path.append(bytes.fromhex(node))
    size = _need(checkpoint.get("tree_size"), int, "checkpoint.tree_size")
    root = merkle.root_from_path(merkle.leaf_hash(leaf), index, size, path)
    if root is None or root.hex() != checkpoint.get("root"):
        raise Failure("checkpoint.proof", "the audit path does not lead to checkpoint.root")
    return (f"checkpoint {checkpoint['tenant']}#{checkpoint['seq']} signed by key "
            f"{checkpoint['key_id']} (from {source}); inclusion proof of "
            f"{leaf['stream']}#{leaf['seq']} in a tree of {size}")


def verify_pack(pack, *, public_keys: list[bytes] = (), kept: str | None = None,
                retired: dict | None = None) -> list[str]:
    """Check a parsed pack; returns what was verified, raises `Failure` at the first fault.
    `kept`: a checkpoint (signed note) the auditor kept earlier; `retired`: {key id:
    retired_at} (a checkpoint dated after its key's retirement is refused)."""
    _need(pack, dict, "pack")
    if pack.get("format") in OLD_FORMATS:
        raise Failure("format", f"{pack['format']}: {OLD_FORMATS[pack['format']]}")
    if pack.get("format") != PACK_FORMAT:
        raise Failure("format", f"expected {PACK_FORMAT}")
    for section, kind in _SECTIONS.items():
        _need(pack.get(section), kind, section)
    extra = sorted(set(pack) - set(_SECTIONS) - set(NOT_ATTESTED) - {
        "format", "generated_at", "workflow_hash", "verification", "checkpoint_note", "log",
        "children"})
    if extra:
        raise Failure(extra[0], "is not a field of the format")
    run_id = _need(pack["run"].get("run_id"), str, "run.run_id")
    check_unreadable(pack)
    events = check_events(pack, run_id)
    check_run(pack, events)
    check_receipts(pack, events, run_id)
    try:
        check_spelling(pack)
        check_bound(run=pack["run"], steps=pack["steps"], decisions=pack["decisions"],
                    gates=pack["gates"], events=events, hashed_outputs=True)
    except Unbound as exc:
        raise Failure(exc.path, exc.problem) from None
    check_children(pack, events)
    anchored = check_checkpoint(pack, events, list(public_keys))
    try:
        check_retired(pack["checkpoint"], retired or {})
        keys = pack_keys(pack, list(public_keys))
        logged = check_log(pack, events, keys, kept)
        attested = check_envelope(pack, keys)
    except LogFailure as failure:
        raise Failure(failure.path, failure.problem) from None
    return [f"{len(events)} events: hashes and links recomputed",
            f"{len(pack['receipts'])} receipts and the workflow_hash recomputed; "
            f"{len(pack['decisions'])} decisions, {len(pack['gates'])} gates and "
            f"{len(pack.get('children', []))} child runs match events; "
            "every fact bound to its event, both ways",
            anchored, logged, attested]


def main(argv=None, prog: str = f"python -m {__package__}.verify_pack") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Verify a Federation Core evidence pack.")
    parser.add_argument("pack", help="the evidence pack (JSON)")
    parser.add_argument("--public-key", action="append", default=[], dest="keys",
                        help="trusted Ed25519 public key: base64 of the raw 32 bytes, or a "
                             "file holding it (or PEM); repeatable")
    parser.add_argument("--keys", metavar="FILE", dest="keys_file",
                        help="the keys to trust, a saved GET /workflows/audit/keys answer: "
                             "pins them all, and refuses a checkpoint dated after its key's "
                             "retired_at")
    parser.add_argument("--since-checkpoint", metavar="FILE", dest="kept",
                        help="a checkpoint of the tenant's log (C2SP signed note) kept "
                             "earlier: the pack's log must extend it")
    args = parser.parse_args(argv)
    try:
        pinned = []
        for value in args.keys:
            text = Path(value).read_text() if Path(value).is_file() else value
            pinned.append(signing.public_key_parse(text))
        pack = json.loads(Path(args.pack).read_text(encoding="utf-8"))
        kept = Path(args.kept).read_text(encoding="utf-8") if args.kept else None
        retired = {}
        if args.keys_file:
            listed, retired = keys_read(Path(args.keys_file).read_text(encoding="utf-8"))
            pinned.extend(listed)
    except LogFailure as exc:
        print(f"cannot read: {exc.path}: {exc.problem}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RecursionError) as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 2
    try:
        lines = verify_pack(pack, public_keys=pinned, kept=kept, retired=retired)
    except Failure as failure:
        print(f"FAILED {failure}")
        return 1
    print("OK " + args.pack)
    for line in lines:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
