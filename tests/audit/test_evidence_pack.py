"""Evidence packs through the offline verifier: a round trip in a subprocess, and every
kind of change — strings, integers, hashes, nested data, added and removed fields —
caught and named precisely."""

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.verify_pack import Failure, verify_pack
from fcore.members import member_set

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run_verifier(*args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "FCORE"))}
    return subprocess.run([sys.executable, "-m", "audit.verify_pack", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


@pytest.fixture
def pack(api, completed_run):
    response = api.get(f"/workflows/runs/{completed_run}/evidence")
    assert response.status_code == 200
    return response.json()


def failure_of(pack) -> str:
    with pytest.raises(Failure) as caught:
        verify_pack(pack)
    return str(caught.value)


def test_round_trip_through_the_offline_verifier(api, pack, tmp_path):
    assert pack["checkpoint"]["proof"]["leaf"]["seq"] == len(pack["events"])
    assert {"rules_triggered", "policy_version", "context"} <= set(pack["decisions"][0])
    assert pack["gates"][0]["approvals"][0]["actor"] == "client:second_approver"
    path = tmp_path / "pack.json"
    path.write_text(json.dumps(pack), encoding="utf-8")
    result = run_verifier(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "from the pack (not pinned" in result.stdout
    call_command("register_signing_key")
    key = api.get("/workflows/audit/keys").json()[0]["public_key"]
    pinned = run_verifier(path, "--public-key", key)
    assert pinned.returncode == 0 and "(from --public-key)" in pinned.stdout
    other = "A" * 43 + "="
    wrong = run_verifier(path, "--public-key", other)
    assert wrong.returncode == 1
    assert wrong.stdout.startswith("FAILED checkpoint.key_id: ")
    assert run_verifier(tmp_path / "missing.json").returncode == 2


def test_the_verifier_needs_neither_django_nor_a_database():
    code = ("import sys, audit.verify_pack; "
            "assert not any(m.split('.')[0] in ('django', 'rest_framework', 'psycopg') "
            "for m in sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _flip(text: str) -> str:
    return (chr(ord(text[0]) ^ 1) + text[1:]) if text else "x"


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _payload_edit(pack, change) -> None:
    statement = json.loads(base64.b64decode(pack["attestation"]["payload"]))
    change(statement)
    pack["attestation"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _flip_hex(digest: str) -> str:
    """Another valid hex digest: the first digit changed."""
    return ("1" if digest[0] == "0" else "0") + digest[1:]


def _flip_digit(at: str) -> str:
    """A different last microsecond digit: `…123456Z` → `…123457Z`."""
    return at[:-2] + str((int(at[-2]) + 1) % 10) + "Z"


CASES = [
    # strings
    ("events[3].actor", lambda p: p["events"][3].update(actor=_flip(p["events"][3]["actor"])),
     "events[3].hash: does not match its content"),
    ("events[3].at", lambda p: p["events"][3].update(at=_flip_digit(p["events"][3]["at"])),
     "events[3].hash: does not match its content"),
    ("events[3].message", lambda p: p["events"][3].update(message="Nothing happened"),
     "events[3].message: is not the message of its code and data"),
    ("run.status", lambda p: p["run"].update(status="failed"),
     "run.status: differs from the status sealed in events["),
    ("run.created_by", lambda p: p["run"].update(created_by="client:mallory"),
     "run.created_by: is not the actor of events[0] (FC-RUN-001)"),
    ("gates[0].approvals[0].actor",
     lambda p: p["gates"][0]["approvals"][0].update(actor="client:mallory"),
     "gates[0] (gate {gate}).approvals[0] (vote of client:mallory): no FC-GATE-002 event "
     "records this vote"),
    ("gates[0].approvals[0].comment",
     lambda p: p["gates"][0]["approvals"][0].update(comment="looked fine"),
     "gates[0] (gate {gate}).approvals[0] (vote of client:second_approver).comment: is "
     "'looked fine', but events[8] (FC-GATE-002) records 'checked the invoice ✓'"),
    ("steps[1].started_at", lambda p: p["steps"][1].update(started_at="2020-01-01T00:00:00Z"),
     "steps[1].started_at: differs from the signed attestation"),
    ("generated_at", lambda p: p.update(generated_at=_flip(p["generated_at"])),
     "generated_at: differs from the signed attestation"),
    # integers
    ("events[3].seq", lambda p: p["events"][3].update(seq=5), "events[3].seq: expected 4"),
    ("receipts[2].attempt",
     lambda p: p["receipts"][2].update(attempt=p["receipts"][2]["attempt"] + 1),
     "receipts[2].receipt_hash: does not match its fields"),
    ("run.workflow_version", lambda p: p["run"].update(workflow_version=9),
     "run.workflow_version: differs from events[0] (FC-RUN-001)"),
    ("checkpoint.seq", lambda p: p["checkpoint"].update(seq=p["checkpoint"]["seq"] + 1),
     "checkpoint.hash: does not match its content"),
    ("checkpoint.proof.leaf_index", lambda p: p["checkpoint"]["proof"].update(
        leaf_index=p["checkpoint"]["proof"]["leaf_index"] + 1),
     "checkpoint.proof: the audit path does not lead to checkpoint.root"),
    ("decisions[0].evaluation_us", lambda p: p["decisions"][0].update(
        evaluation_us=p["decisions"][0]["evaluation_us"] + 1),
     "decisions[0].evaluation_us: differs from the signed attestation"),
    # hashes
    ("events[3].hash", lambda p: p["events"][3].update(hash=_flip(p["events"][3]["hash"])),
     "events[3].hash: does not match its content"),
    ("events[4].prev_hash",
     lambda p: p["events"][4].update(prev_hash=_flip(p["events"][4]["prev_hash"])),
     "events[4].prev_hash: does not link to events[3].hash"),
    ("receipts[2].receipt_hash",
     lambda p: p["receipts"][2].update(receipt_hash=_flip(p["receipts"][2]["receipt_hash"])),
     "receipts[2].receipt_hash: does not match its fields"),
    ("workflow_hash", lambda p: p.update(workflow_hash=_flip(p["workflow_hash"])),
     "workflow_hash: differs from the one sealed in events["),
    ("checkpoint.root", lambda p: p["checkpoint"].update(root=_flip(p["checkpoint"]["root"])),
     "checkpoint.hash: does not match its content"),
    ("checkpoint.signature",
     lambda p: p["checkpoint"].update(signature=_flip(p["checkpoint"]["signature"])),
     "checkpoint.signature: does not verify with key"),
    ("checkpoint.public_key",
     lambda p: p["checkpoint"].update(public_key=_flip(p["checkpoint"]["public_key"])),
     "checkpoint.public_key: "),
    ("checkpoint.proof.audit_path[0]",
     lambda p: p["checkpoint"]["proof"]["audit_path"].__setitem__(
         0, _flip_hex(p["checkpoint"]["proof"]["audit_path"][0])),
     "checkpoint.proof: the audit path does not lead to checkpoint.root"),
    ("stream.head_hash", lambda p: p["stream"].update(head_hash=_flip(p["stream"]["head_hash"])),
     "stream.head_hash: is not the last event's hash"),
    # nested data
    ("events[0].data.input_hash", lambda p: p["events"][0]["data"].update(input_hash="0" * 64),
     "events[0].hash: does not match its content"),
    ("run.input.note", lambda p: p["run"]["input"].update(note="naive"),
     "run.input: does not match the input_hash of events[0] (FC-RUN-001)"),
    ("run.metadata.ticket", lambda p: p["run"]["metadata"].update(ticket="AUD-8"),
     "run.metadata: differs from the signed attestation"),
    ("steps[1].output.f", lambda p: p["steps"][1]["output"].update(f=0.2),
     "steps[1].output: does not match the receipt's output_hash"),
    ("steps[0].input", lambda p: p["steps"][0].update(input={"amount": 1}),
     "steps[0].input: does not match the receipt's input_hash"),
    ("decisions[0].rules_triggered", lambda p: p["decisions"][0].update(
        rules_triggered=[{"policy": "limits", "rule": "big", "effect": "flag"}]),
     "decisions[0] (step step_1 attempt 1).rules_triggered: is [{'policy': 'limits', "
     "'rule': 'big', 'effect': 'flag'}], but events[2] (FC-POL-001) records []"),
    ("decisions[0].context", lambda p: p["decisions"][0]["context"].update(extra=1),
     "decisions[0].context: differs from the signed attestation"),
    ("definition.steps", lambda p: p["definition"]["steps"][0].update(type="noop2"),
     "definition.spec_hash: does not match definition.steps"),
    ("attestation.payload", lambda p: _payload_edit(
        p, lambda st: st["predicate"]["fields"].update({"run.metadata": "0" * 64})),
     "attestation: the signature by key"),
    ("attestation field added", lambda p: p["attestation"].update(note="x"),
     "attestation: an envelope has exactly payload, payloadType and signatures"),
    ("checkpoint field added", lambda p: p["checkpoint"].update(note="x"),
     "checkpoint.note: is not a field of the format"),
    ("checkpoint.proof field added", lambda p: p["checkpoint"]["proof"].update(note="x"),
     "checkpoint.proof.note: is not a field of the format"),
    ("checkpoint.proof.leaf field added",
     lambda p: p["checkpoint"]["proof"]["leaf"].update(note="x"),
     "checkpoint.proof.leaf.note: is not a field of the format"),
    ("log field added", lambda p: p["log"].update(note="x"),
     "log.note: is not a field of the format"),
    ("log.leaf field added", lambda p: p["log"]["leaf"].update(note="x"),
     "log.leaf.note: is not a field of the format"),
    ("log.inclusion_proof[0]", lambda p: p["log"]["inclusion_proof"].__setitem__(
        0, _flip_b64(p["log"]["inclusion_proof"][0])),
     "log.inclusion_proof: does not lead from log.leaf to the root"),
    ("log.leaf_index out of range", lambda p: p["log"].update(leaf_index=p["log"]["tree_size"]),
     "log.leaf_index: must satisfy 0 <= leaf_index < tree_size"),
    ("log.tree_size", lambda p: p["log"].update(tree_size=p["log"]["tree_size"] + 1),
     "log.checkpoint: does not state log.origin, log.tree_size and log.root_hash"),
    ("log.checkpoint signature", lambda p: p["log"].update(
        checkpoint=p["log"]["checkpoint"].replace("\n\n\u2014", "\nx\n\n\u2014")),
     "log.checkpoint: "),
    # added and removed
    ("an event removed", lambda p: p["events"].pop(),
     "stream.head_seq: is not the last event's seq"),
    ("a field added", lambda p: p["run"].update(approved_by="client:mallory"),
     "run.approved_by: is not in the signed attestation (added after signing)"),
    ("a field removed", lambda p: p["steps"][2].pop("ended_at"),
     "steps[2].ended_at: is missing (the signed attestation lists it)"),
    ("a section added", lambda p: p.update(notes="all good"),
     "notes: is not a field of the format"),
]


@pytest.mark.parametrize("name,mutate,message", CASES, ids=[c[0] for c in CASES])
def test_a_change_is_named_precisely(pack, name, mutate, message):
    verify_pack(copy.deepcopy(pack))  # intact: no failure
    changed = copy.deepcopy(pack)
    mutate(changed)
    gate = pack["gates"][0]["gate_id"] if pack["gates"] else None
    assert failure_of(changed).startswith(message.replace("{gate}", str(gate)))


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _set(pack, path, value):
    target = pack
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return _flip(value)
    return "x"  # None


def test_every_leaf_of_the_pack_is_protected(pack):
    """Change each value of the pack in turn (every string, number, boolean and null):
    the verifier must fail every time."""
    leaves = list(_leaves(pack))
    assert len(leaves) > 400
    missed = []
    for path, value in leaves:
        changed = copy.deepcopy(pack)
        _set(changed, path, _changed(value))
        try:
            verify_pack(changed)
        except Failure:
            continue
        missed.append(path)
    assert missed == []


def test_a_pack_without_a_checkpoint_does_not_verify(api, completed_run, settings):
    settings.FCORE_SIGNING_KEY = ""
    settings.FCORE_SIGNING_KEY_FILE = "/nonexistent/signing_key"
    pack = api.get(f"/workflows/runs/{completed_run}/evidence").json()
    assert pack["checkpoint"] is None and "no checkpoint could be sealed" in pack[
        "checkpoint_note"]
    assert failure_of(pack).startswith("checkpoint: missing (no checkpoint could be sealed")


def test_console_download_is_the_same_pack(client, pt004, pack, completed_run):
    membership = member_set(tenant=pt004, username="auditor", groups=["auditors"])
    client.force_login(membership.user)
    response = client.get(f"/console/runs/{completed_run}/evidence.json")
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="evidence-{completed_run}.json"')
    downloaded = response.json()
    assert downloaded["events"] == pack["events"] and downloaded["checkpoint"]["hash"] == (
        pack["checkpoint"]["hash"])
    verify_pack(downloaded)
    page = client.get(f"/console/runs/{completed_run}/")
    assert f"/console/runs/{completed_run}/evidence.json" in page.content.decode()
