"""The tenant's append-only log: it only grows, its checkpoints are C2SP signed notes, its
proofs verify (and bad ranges are a 400), a kept checkpoint exposes a re-signed history,
and retired keys and pinned keys are honoured."""

import base64
import copy
import datetime
import hashlib
import json
import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import merkle, merkle_log, note, signing
from audit.checkpoints import checkpoint_seal
from audit.hashing import event_hash
from audit.immutability import triggers_suspended
from audit.log import log_origin
from audit.models import AuditEvent, AuditStream, Checkpoint, CheckpointCursor, LogLeaf, SigningKey
from audit.verify import audit_verify
from audit.verify_pack import Failure, verify_pack

pytestmark = pytest.mark.django_db


def _new_run(api, amount=5) -> str:
    return api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                        "input": {"amount": amount}}).json()["run_id"]


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _keys(api) -> list[dict]:
    return api.get("/workflows/audit/keys").json()


def _public(api) -> bytes:
    return _b64(_keys(api)[-1]["public_key"])


@pytest.fixture
def grown_log(api, pt004, completed_run):
    """Four checkpoints, each after new activity: [(size, root, note)]."""
    states = []
    for i in range(4):
        if i:
            _new_run(api, amount=i)
        checkpoint = checkpoint_seal(tenant=pt004)
        assert checkpoint is not None
        states.append((checkpoint.log_size, bytes.fromhex(checkpoint.log_root), checkpoint.note))
    return states


def test_the_tree_only_grows_across_checkpoints(pt004, grown_log):
    sizes = [size for size, _, _ in grown_log]
    assert sizes == sorted(set(sizes))  # strictly growing
    leaves = list(LogLeaf.objects.filter(tenant=pt004).order_by("index"))
    assert [leaf.index for leaf in leaves] == list(range(sizes[-1]))
    hashes = [bytes.fromhex(leaf.leaf_hash) for leaf in leaves]
    previous = 0
    for checkpoint in Checkpoint.objects.filter(tenant=pt004).order_by("seq"):
        mine = [leaf for leaf in leaves if leaf.checkpoint_id == checkpoint.pk]
        assert [leaf.index for leaf in mine] == list(range(previous, checkpoint.log_size))
        assert [{"stream": leaf.stream, "seq": leaf.seq, "hash": leaf.hash}
                for leaf in mine] == checkpoint.heads
        assert all(merkle.leaf_hash(h) == bytes.fromhex(leaf.leaf_hash)
                   for h, leaf in zip(checkpoint.heads, mine, strict=True))
        previous = checkpoint.log_size
    for size, root, _ in grown_log:  # every earlier root is the root of a prefix
        assert merkle_log.tree_root(hashes, 0, size) == root
    assert audit_verify(tenant_ids=[pt004.id]).ok


def test_checkpoints_are_c2sp_signed_notes(api, pt004, grown_log):
    size, root, _ = grown_log[-1]
    response = api.get("/workflows/audit/checkpoint")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    origin = log_origin(pt004.slug)
    body, signatures = note.note_split(text)
    assert body == f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    public = _public(api)
    assert signatures == [(origin, note.key_hash(origin, public), signatures[0][2])]
    assert note.note_verify(text, origin, public) == body
    earlier = api.get(f"/workflows/audit/checkpoint?size={grown_log[0][0]}")
    assert earlier.content.decode() == grown_log[0][2]
    assert api.get("/workflows/audit/checkpoint?size=999999").status_code == 404
    key = _keys(api)[-1]
    assert key["name"] == origin
    assert key["vkey"] == note.verifier_key(origin, public)
    assert key["vkey"].startswith(f"{origin}+{note.key_hash(origin, public).hex()}+")


def test_consistency_proofs_between_every_pair_of_sizes(api, pt004, grown_log):
    hashes = [bytes.fromhex(h) for h in LogLeaf.objects.filter(tenant=pt004)
              .order_by("index").values_list("leaf_hash", flat=True)]
    n = len(hashes)
    for first in range(1, n + 1):
        for second in range(first, n + 1):
            proof = merkle_log.consistency_proof(hashes, first, second)
            assert merkle_log.consistency_valid(
                first, second, merkle_log.tree_root(hashes, 0, first),
                merkle_log.tree_root(hashes, 0, second), proof), (first, second)
            if first < second and proof:  # a wrong old root does not verify
                assert not merkle_log.consistency_valid(
                    first, second, hashlib.sha256(b"x").digest(),
                    merkle_log.tree_root(hashes, 0, second), proof)
    for (m, root_m, _), (k, root_k, _) in zip(grown_log, grown_log[1:], strict=False):
        answer = api.get(f"/workflows/audit/proof/consistency?from={m}&to={k}").json()
        assert answer["from"] == m and answer["to"] == k
        assert merkle_log.consistency_valid(m, k, root_m, root_k,
                                            [_b64(p) for p in answer["proof"]])


def test_inclusion_proofs_of_every_leaf(api, pt004, grown_log):
    size, root, _ = grown_log[-1]
    for index in range(size):
        answer = api.get(f"/workflows/audit/proof/inclusion?index={index}&size={size}").json()
        leaf = merkle.leaf_hash(answer["leaf"])
        assert _b64(answer["leaf_hash"]) == leaf
        assert merkle_log.inclusion_valid(leaf, index, size, [_b64(p) for p in answer["proof"]],
                                          root)
        assert not merkle_log.inclusion_valid(leaf, index, size, [], root) or size == 1


@pytest.mark.parametrize("query", [
    "consistency?from=0&to=1", "consistency?from=3&to=2", "consistency?from=1&to=999999",
    "consistency?from=-1&to=2", "consistency?from=a&to=2", "consistency?to=2",
    "consistency?from=1&to=99999999999999999999999",
    "inclusion?index=5&size=5", "inclusion?index=0&size=0", "inclusion?index=0&size=999999",
    "inclusion?index=-1&size=2", "inclusion?index=x&size=2", "inclusion?size=2",
])
def test_bad_ranges_are_a_clear_400(api, grown_log, query):
    response = api.get(f"/workflows/audit/proof/{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "bad_request" and body["detail"]


def test_bad_since_and_size_are_a_400(api, completed_run, grown_log):
    assert api.get(f"/workflows/runs/{completed_run}/evidence?since=0").status_code == 400
    assert api.get(f"/workflows/runs/{completed_run}/evidence?since=999999").status_code == 400
    assert api.get("/workflows/audit/checkpoint?size=abc").status_code == 400


def test_a_pack_key_other_than_the_pinned_one_is_refused(api, completed_run):
    pack = api.get(f"/workflows/runs/{completed_run}/evidence").json()
    pinned = _b64(pack["checkpoint"]["public_key"])
    assert verify_pack(copy.deepcopy(pack), public_keys=[pinned])
    other = signing.public_raw(signing.private_key_from_b64(
        base64.b64encode(os.urandom(32)).decode()))
    pack["checkpoint"]["public_key"] = signing.b64encode(other)
    with pytest.raises(Failure, match="checkpoint.public_key: differs from the pinned key"):
        verify_pack(pack, public_keys=[pinned])


def test_a_checkpoint_signed_after_its_key_was_retired_fails(pt004, completed_run):
    checkpoint = checkpoint_seal(tenant=pt004)
    assert audit_verify(tenant_ids=[pt004.id]).ok
    from django.utils.dateparse import parse_datetime
    signed_at = parse_datetime(checkpoint.at)
    SigningKey.objects.filter(key_id=checkpoint.key_id).update(
        retired_at=signed_at.replace(year=signed_at.year - 1))
    report = audit_verify(tenant_ids=[pt004.id])
    assert any(f"after key {checkpoint.key_id} was retired" in f["problem"]
               for f in report.failures), report.failures


def _rewrite_and_resign(tenant, stream_name: str) -> None:
    """What a database superuser holding the signing key does: rewrite an event of a run
    (its creation), re-chain the stream, throw the checkpoints and the log away and
    sign a fresh history."""
    stream = AuditStream.objects.get(name=stream_name)
    events = list(AuditEvent.objects.filter(stream=stream).order_by("seq"))
    field = AuditEvent._meta.get_field("data")
    with triggers_suspended(connection):
        prev = "0" * 64
        for event in events:
            data = dict(event.data)
            if event.code == "FC-RUN-001":
                data["idempotency_key"] = "rewritten"
            digest = event_hash(prev_hash=prev, stream=stream_name, seq=event.seq,
                                code=event.code, actor=event.actor, at=event.at, data=data)
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET data = %s, "
                               "prev_hash = %s, hash = %s WHERE id = %s",
                               [field.get_db_prep_save(data, connection),
                                prev, digest, event.pk])
            prev = digest
    AuditStream.objects.filter(pk=stream.pk).update(head_hash=prev)
    LogLeaf.objects.filter(tenant=tenant).delete()
    CheckpointCursor.objects.filter(tenant=tenant).delete()
    Checkpoint.objects.filter(tenant=tenant).delete()
    AuditStream.objects.filter(tenant=tenant).update(unsealed=True)
    assert checkpoint_seal(tenant=tenant) is not None


def test_a_rewrite_that_resigns_history_is_caught_by_a_kept_checkpoint(
        api, pt004, completed_run, tmp_path):
    rewritten = _new_run(api)
    checkpoint_seal(tenant=pt004)
    kept = api.get("/workflows/audit/checkpoint").content.decode()
    kept_size = int(kept.split("\n")[1])
    path = tmp_path / "kept.note"
    path.write_text(kept, encoding="utf-8")
    call_command("audit_verify", "--since-checkpoint", str(path))  # holds before

    _rewrite_and_resign(pt004, f"run/{rewritten}")
    assert audit_verify(tenant_ids=[pt004.id]).ok  # the re-signed history is self-consistent
    report = audit_verify(tenant_ids=[pt004.id], kept_checkpoints=[kept])
    assert any("history was rewritten" in f["problem"] for f in report.failures), \
        report.failures
    with pytest.raises(CommandError):
        call_command("audit_verify", "--since-checkpoint", str(path))
    pack = api.get(f"/workflows/runs/{completed_run}/evidence?since={kept_size}").json()
    verify_pack(copy.deepcopy(pack))  # alone, a fresh pack (of an untouched run) verifies
    with pytest.raises(Failure, match="history was rewritten"):
        verify_pack(pack, kept=kept)


def test_a_pack_is_checked_against_a_kept_checkpoint(api, pt004, completed_run, tmp_path):
    checkpoint_seal(tenant=pt004)
    kept = api.get("/workflows/audit/checkpoint").content.decode()
    kept_size = int(kept.split("\n")[1])
    pack_same = api.get(f"/workflows/runs/{completed_run}/evidence").json()
    assert "same tree as the kept" in verify_pack(pack_same, kept=kept)[3]
    later_run = _new_run(api)
    checkpoint_seal(tenant=pt004)
    pack = api.get(f"/workflows/runs/{later_run}/evidence?since={kept_size}").json()
    assert pack["log"]["tree_size"] > kept_size
    assert f"consistent with the kept checkpoint of size {kept_size}" in \
        verify_pack(copy.deepcopy(pack), kept=kept)[3]
    without = copy.deepcopy(pack)
    del without["log"]["consistency"]
    with pytest.raises(Failure, match=f"log.consistency: missing: fetch the pack with "
                                      f"\\?since={kept_size}"):
        verify_pack(without, kept=kept)
    wrong = copy.deepcopy(pack)
    wrong["log"]["consistency"]["proof"] = wrong["log"]["consistency"]["proof"][::-1] + [
        base64.b64encode(b"\0" * 32).decode()]
    with pytest.raises(Failure, match="log.consistency: "):
        verify_pack(wrong, kept=kept)
    forged = kept.replace(kept.split("\n")[2], base64.b64encode(b"\1" * 32).decode())
    with pytest.raises(Failure, match="--since-checkpoint: "):
        verify_pack(copy.deepcopy(pack), kept=forged)


def test_the_attestation_endpoint_serves_the_packs_envelope(api, completed_run):
    envelope = api.get(f"/workflows/runs/{completed_run}/attestation").json()
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    pack = api.get(f"/workflows/runs/{completed_run}/evidence").json()
    assert set(envelope) == set(pack["attestation"]) == {"payload", "payloadType",
                                                         "signatures"}
    pending = _new_run(api)
    response = api.get(f"/workflows/runs/{pending}/attestation")
    assert response.status_code == 409 and response.json()["code"] == "conflict"


def test_verify_pack_refuses_a_checkpoint_signed_after_its_key_was_retired(
        api, completed_run, tmp_path):
    from audit.verify_pack import main

    pack = api.get(f"/workflows/runs/{completed_run}/evidence").json()
    pack_path, keys_path = tmp_path / "pack.json", tmp_path / "keys.json"
    pack_path.write_text(json.dumps(pack), encoding="utf-8")
    keys = _keys(api)
    keys_path.write_text(json.dumps(keys), encoding="utf-8")
    assert main([str(pack_path), "--keys", str(keys_path)]) == 0
    keys[-1]["retired_at"] = "2000-01-01T00:00:00Z"  # retired long before it signed
    keys_path.write_text(json.dumps(keys), encoding="utf-8")
    assert main([str(pack_path), "--keys", str(keys_path)]) == 1
    with pytest.raises(Failure, match="checkpoint.at: is after key .* was retired"):
        verify_pack(pack, public_keys=[_b64(keys[-1]["public_key"])],
                    retired={keys[-1]["key_id"]: datetime.datetime(
                        2000, 1, 1, tzinfo=datetime.UTC)})


def test_migration_0009_appends_the_heads_of_earlier_checkpoints(api, pt004, completed_run,
                                                                  grown_log):
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("audit.migrations.0009_log_leaves").leaves_backfill
    before = list(LogLeaf.objects.filter(tenant=pt004).order_by("index")
                  .values_list("index", "stream", "seq", "hash", "leaf_hash", "checkpoint_id"))
    roots = list(Checkpoint.objects.filter(tenant=pt004).order_by("seq")
                 .values_list("log_size", "log_root", "log_frontier"))
    LogLeaf.objects.filter(tenant=pt004).delete()  # as before the log existed
    Checkpoint.objects.filter(tenant=pt004).update(log_size=None, log_root="", log_frontier=[],
                                                   note="")
    backfill(apps, None)
    after = list(LogLeaf.objects.filter(tenant=pt004).order_by("index")
                 .values_list("index", "stream", "seq", "hash", "leaf_hash", "checkpoint_id"))
    assert after == before
    assert list(Checkpoint.objects.filter(tenant=pt004).order_by("seq")
                .values_list("log_size", "log_root", "log_frontier")) == roots
    assert api.get("/workflows/audit/checkpoint").status_code == 404  # nothing signed yet
    assert audit_verify(tenant_ids=[pt004.id]).ok
    _new_run(api)
    checkpoint = checkpoint_seal(tenant=pt004)  # the first note covers the old heads too
    assert checkpoint.log_size > roots[-1][0]
    answer = api.get(f"/workflows/audit/proof/inclusion?index=0&size={checkpoint.log_size}")
    assert merkle_log.inclusion_valid(_b64(answer.json()["leaf_hash"]), 0, checkpoint.log_size,
                                      [_b64(p) for p in answer.json()["proof"]],
                                      bytes.fromhex(checkpoint.log_root))
    pack = api.get(f"/workflows/runs/{completed_run}/evidence").json()  # an old checkpoint
    assert pack["log"]["tree_size"] == checkpoint.log_size  # proved in the latest note
    verify_pack(pack)
