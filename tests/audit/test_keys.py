"""Registering the checkpoint signing key: only at start-up, by command or before a seal,
always audited (FC-AUD-002); reads never write."""

import base64
import os

import pytest
from django.core.management import call_command

from audit import signing
from audit.checkpoints import checkpoint_seal
from audit.keys import signing_key, signing_key_register
from audit.models import AuditEvent, SigningKey

pytestmark = pytest.mark.django_db


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def snapshot() -> tuple:
    keys = list(SigningKey.objects.order_by("id").values_list("key_id", "retired_at"))
    return keys, AuditEvent.objects.count()


def key_events(slug="tenant_omega") -> list[dict]:
    return [e.data for e in AuditEvent.objects.filter(
        stream__name=f"tenant/{slug}/admin", code="FC-AUD-002").order_by("seq")]


def test_reading_the_keys_registers_and_retires_nothing(api, pt004, settings):
    settings.FCORE_SIGNING_KEY = new_key()
    call_command("register_signing_key")
    settings.FCORE_SIGNING_KEY = new_key()  # configured, not yet registered
    before = snapshot()
    assert api.get("/workflows/audit/keys").status_code == 200
    assert snapshot() == before


def test_the_command_puts_the_key_in_service_once_and_audits_it(api, pt004, other_tenant,
                                                                 settings):
    settings.FCORE_SIGNING_KEY = first = new_key()
    call_command("register_signing_key")
    first_id = signing_key().key_id
    settings.FCORE_SIGNING_KEY = new_key()
    call_command("register_signing_key")
    second_id = signing_key().key_id
    call_command("register_signing_key")  # in service already: no change, no event
    for slug in ("tenant_omega", "tenant_sigma"):
        assert [(e["key_id"], e["retired"]) for e in key_events(slug)] == \
            [(first_id, []), (second_id, [first_id])]
    assert key_events()[0]["public_key"] == signing.b64encode(
        signing.public_raw(signing.private_key_from_b64(first)))
    listed = api.get("/workflows/audit/keys").json()
    assert [(k["key_id"], k["retired_at"] is None) for k in listed] == \
        [(first_id, False), (second_id, True)]
    call_command("audit_verify")


def test_a_key_brought_back_is_recorded(pt004, settings):
    settings.FCORE_SIGNING_KEY = old = new_key()
    old_key = signing_key()
    assert signing_key_register(old_key)
    settings.FCORE_SIGNING_KEY = new_key()
    assert signing_key_register(signing_key())
    settings.FCORE_SIGNING_KEY = old
    assert signing_key_register(old_key) and not signing_key_register(old_key)
    assert [e["key_id"] for e in key_events()][-1] == old_key.key_id
    assert list(SigningKey.objects.filter(retired_at__isnull=True)
                .values_list("key_id", flat=True)) == [old_key.key_id]


def test_a_seal_registers_its_key_first(pt004, completed_run, settings):
    settings.FCORE_SIGNING_KEY = new_key()
    checkpoint = checkpoint_seal(tenant=pt004)
    assert [e["key_id"] for e in key_events()] == [checkpoint.key_id]
    registered = AuditEvent.objects.get(code="FC-AUD-002", stream__name__endswith="omega/admin")
    assert registered.message == f"Signing key {checkpoint.key_id} put in service"
    head = next(h for h in checkpoint.heads if h["stream"] == "tenant/tenant_omega/admin")
    assert head["seq"] >= registered.seq  # the registration is under this checkpoint
