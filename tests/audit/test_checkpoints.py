"""Signed checkpoints: what is sealed, chaining, key rotation, the beat task, the keys
endpoint."""

import base64
import os

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from audit import signing
from audit.checkpoints import _marks_clear, _unsealed_heads, checkpoint_seal
from audit.hashing import GENESIS_HASH, checkpoint_body, checkpoint_hash
from audit.jcs import canonical
from audit.merkle import merkle_root
from audit.models import AuditEvent, AuditStream, Checkpoint, SigningKey
from audit.services import audit_append
from audit.tasks import seal_checkpoints

pytestmark = pytest.mark.django_db


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def public_of(private_b64: str) -> bytes:
    return signing.public_raw(signing.private_key_from_b64(private_b64))


def test_seal_signs_the_changed_heads_and_records_fc_aud_001(pt004, completed_run, settings):
    settings.FCORE_SIGNING_KEY = key = new_key()
    checkpoint = checkpoint_seal(tenant=pt004)
    names = [h["stream"] for h in checkpoint.heads]
    assert names == sorted(names) and f"run/{completed_run}" in names
    assert "tenant/tenant_omega/admin" in names  # bundle loads and client creation
    run_head = next(h for h in checkpoint.heads if h["stream"] == f"run/{completed_run}")
    last = AuditEvent.objects.filter(stream__name=f"run/{completed_run}").order_by("seq").last()
    assert (run_head["seq"], run_head["hash"]) == (last.seq, last.hash)
    assert checkpoint.root == merkle_root(checkpoint.heads)
    assert checkpoint.seq == 1 and checkpoint.prev_hash == GENESIS_HASH
    body = checkpoint_body(tenant="tenant_omega", seq=1, prev_hash=GENESIS_HASH,
                           root=checkpoint.root, tree_size=checkpoint.tree_size,
                           at=checkpoint.at, key_id=checkpoint.key_id)
    assert checkpoint.hash == checkpoint_hash(body)
    assert checkpoint.key_id == signing.key_id(public_of(key))
    assert signing.signature_valid(public_of(key), canonical(body), checkpoint.signature)
    sealed = AuditEvent.objects.get(stream__name="tenant/tenant_omega/admin", code="FC-AUD-001")
    assert sealed.data["hash"] == checkpoint.hash and sealed.message == "Checkpoint sealed"


def test_nothing_changed_nothing_sealed_then_only_what_changed(api, pt004, completed_run):
    first = checkpoint_seal(tenant=pt004)
    assert checkpoint_seal(tenant=pt004) is None  # its own FC-AUD-001 is not a change
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 5}}).json()["run_id"]
    second = checkpoint_seal(tenant=pt004)
    assert second.seq == 2 and second.prev_hash == first.hash
    assert [h["stream"] for h in second.heads] == [f"run/{run_id}"]


def unsealed(tenant) -> set[str]:
    return set(AuditStream.objects.filter(tenant=tenant, unsealed=True)
               .values_list("name", flat=True))


def test_a_seal_reads_only_the_streams_marked_since_the_last_one(api, pt004, completed_run):
    """Every append marks its stream `unsealed`; a seal clears the marks of what it sealed,
    so the next one reads the streams changed since, not every stream of the tenant."""
    assert f"run/{completed_run}" in unsealed(pt004)
    checkpoint_seal(tenant=pt004)
    assert unsealed(pt004) <= {"tenant/tenant_omega/admin"}  # at most the seal's own event
    assert checkpoint_seal(tenant=pt004) is None
    assert unsealed(pt004) == set()
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 5}}).json()["run_id"]
    assert unsealed(pt004) == {f"run/{run_id}"}
    api.patch(f"/workflows/runs/{completed_run}/status", {"status": "failed"})  # refused:
    assert unsealed(pt004) == {f"run/{run_id}"}  # a terminal run gets no event, no mark
    checkpoint = checkpoint_seal(tenant=pt004)
    assert [h["stream"] for h in checkpoint.heads] == [f"run/{run_id}"]


def test_a_stream_that_moves_during_a_seal_keeps_its_mark(api, pt004, completed_run):
    call_command("register_signing_key")  # so that the seal appends nothing before it reads
    heads, read = _unsealed_heads(pt004.id)
    assert f"run/{completed_run}" in [h["stream"] for h in heads]
    admin = "tenant/tenant_omega/admin"
    audit_append(tenant_id=pt004.id, stream=admin, code="FC-ADM-003", actor="user:test",
                 data={"name": "late", "action": "created"})  # after the read
    _marks_clear(read)
    assert unsealed(pt004) == {admin}  # the read head of it moved: still to be sealed
    checkpoint = checkpoint_seal(tenant=pt004)
    late = AuditEvent.objects.get(stream__name=admin, code="FC-ADM-003", actor="user:test")
    assert {"stream": admin, "seq": late.seq, "hash": late.hash} in checkpoint.heads


def test_chain_across_a_key_rotation(api, pt004, completed_run, settings):
    settings.FCORE_SIGNING_KEY = old = new_key()
    first = checkpoint_seal(tenant=pt004)
    settings.FCORE_SIGNING_KEY = new = new_key()
    api.post("/workflows/runs", {"workflow": "pt004_execution_spine", "input": {"amount": 5}})
    second = checkpoint_seal(tenant=pt004)
    assert second.prev_hash == first.hash and second.key_id != first.key_id
    keys = {k.key_id: k for k in SigningKey.objects.all()}
    assert keys[first.key_id].retired_at is not None and keys[second.key_id].retired_at is None
    call_command("audit_verify")  # both verify with the registered keys
    listed = api.get("/workflows/audit/keys").json()
    assert [k["key_id"] for k in listed] == [first.key_id, second.key_id]
    assert listed[0]["public_key"] == signing.b64encode(public_of(old))
    assert listed[0]["retired_at"] and listed[1]["retired_at"] is None
    both = [signing.b64encode(public_of(old)), signing.b64encode(public_of(new))]
    call_command("audit_verify", "--public-key", both[0], "--public-key", both[1])
    with pytest.raises(CommandError):  # pinning only the new key rejects checkpoint 1
        call_command("audit_verify", "--public-key", both[1])
    report = api.get("/workflows/audit/verify").json()
    assert report["ok"] and report["checkpoints"] == 2
    assert report["keys"] == sorted([first.key_id, second.key_id])


def test_private_key_never_in_the_database(pt004, completed_run, settings):
    settings.FCORE_SIGNING_KEY = key = new_key()
    checkpoint_seal(tenant=pt004)
    from django.db import connection  # noqa: PLC0415

    with connection.cursor() as cursor:
        cursor.execute("SELECT key_id, public_key FROM audit_signingkey")
        rows = cursor.fetchall()
    assert rows and all(key not in " ".join(row) for row in rows)


def test_default_key_file_is_generated_once():
    path = django_settings.FCORE_SIGNING_KEY_FILE
    assert path.endswith("signing_key")
    assert len(signing.b64decode(open(path).read())) == 32


def test_beat_schedule_and_task(pt004, completed_run):
    entry = django_settings.CELERY_BEAT_SCHEDULE["audit-seal-checkpoints"]
    assert entry == {"task": "audit.tasks.seal_checkpoints",
                     "schedule": float(django_settings.FCORE_CHECKPOINT_INTERVAL_S)}
    assert seal_checkpoints.delay().get() == 1
    assert seal_checkpoints.delay().get() == 0
    assert Checkpoint.objects.filter(tenant=pt004).count() == 1


def test_keys_endpoint_needs_audit_read(api):
    call_command("register_signing_key")
    response = api.get("/workflows/audit/keys", token=api.token(scope="runs:read"))
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert api.get("/workflows/audit/keys").json()[0]["algorithm"] == "Ed25519"


def test_bad_signing_key_is_a_configuration_error(pt004, completed_run, settings):
    from django.core.exceptions import ImproperlyConfigured  # noqa: PLC0415

    settings.FCORE_SIGNING_KEY = base64.b64encode(b"short").decode()
    with pytest.raises(ImproperlyConfigured, match="32 bytes"):
        checkpoint_seal(tenant=pt004)


def test_checkpoints_are_immutable(pt004, completed_run):
    from audit.models import ImmutableEventError  # noqa: PLC0415

    checkpoint = checkpoint_seal(tenant=pt004)
    with pytest.raises(ImmutableEventError):
        checkpoint.save()
    with pytest.raises(ImmutableEventError):
        checkpoint.delete()
