"""The checkpoint signing key: read from settings, its public half registered in the database.

`FCORE_SIGNING_KEY` (base64 of the raw 32-byte Ed25519 private key) wins over
`FCORE_SIGNING_KEY_FILE` (a file holding the same). Rotating means configuring a new key:
it gets a new key id, `signing_key_register` records its public half and retires the
others, and checkpoints signed by the old key still verify against its registered public
key. The private key is never written to the database.

Registration is a state change like any other: it runs at start-up (`serve`), by the
`register_signing_key` command and before a checkpoint is sealed — never in a GET — and
each change is recorded as `FC-AUD-002` on every tenant's admin stream, in the same
transaction, since every tenant's checkpoints are signed by that key from then on.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import signing
from .codes import Code
from .models import SigningKey
from .services import admin_stream_name, audit_append

REGISTER_ACTOR = "system:signing-key"


@dataclass(frozen=True)
class ActiveKey:
    private: object  # Ed25519PrivateKey
    public_raw: bytes
    key_id: str

    @property
    def public_b64(self) -> str:
        return signing.b64encode(self.public_raw)


@lru_cache(maxsize=8)
def _load(text: str, source: str) -> ActiveKey:
    try:
        private = signing.private_key_from_b64(text)
    except signing.BadKey as exc:
        raise ImproperlyConfigured(f"{source}: {exc}") from None
    raw = signing.public_raw(private)
    return ActiveKey(private=private, public_raw=raw, key_id=signing.key_id(raw))


def signing_key() -> ActiveKey:
    """The configured signing key (ImproperlyConfigured when there is none or it is bad)."""
    text = getattr(settings, "FCORE_SIGNING_KEY", "")
    if text:
        return _load(text, "FCORE_SIGNING_KEY")
    path = getattr(settings, "FCORE_SIGNING_KEY_FILE", "")
    if not path:
        raise ImproperlyConfigured("set FCORE_SIGNING_KEY or FCORE_SIGNING_KEY_FILE")
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"FCORE_SIGNING_KEY_FILE {path}: {exc}") from None
    return _load(text, f"FCORE_SIGNING_KEY_FILE {path}")


def _in_service(key: ActiveKey) -> bool:
    """`key` is registered and is the only key not retired."""
    live = list(SigningKey.objects.filter(retired_at__isnull=True)
                .values_list("key_id", flat=True)[:2])
    return live == [key.key_id]


def signing_key_register(key: ActiveKey, *, actor: str = REGISTER_ACTOR) -> bool:
    """Put `key` in service: record its public half, retire every other key, and append
    `FC-AUD-002` to each tenant's admin stream. Idempotent: True only when something
    changed. Must not run while the caller holds an audit stream's lock (it locks every
    tenant's admin stream, in tenant order)."""
    if _in_service(key):
        return False
    try:
        return _register(key, actor=actor)
    except IntegrityError:  # a concurrent first registration of the same key won
        return _register(key, actor=actor)


def _register(key: ActiveKey, *, actor: str) -> bool:
    with transaction.atomic():
        rows = list(SigningKey.objects.select_for_update().order_by("id"))
        row = next((r for r in rows if r.key_id == key.key_id), None)
        retired = [r.key_id for r in rows if r.retired_at is None and r.key_id != key.key_id]
        if row is not None and row.retired_at is None and not retired:
            return False
        if row is None:
            SigningKey.objects.create(key_id=key.key_id, public_key=key.public_b64)
        elif row.retired_at is not None:  # a key brought back into service
            SigningKey.objects.filter(pk=row.pk).update(retired_at=None)
        SigningKey.objects.filter(key_id__in=retired).update(retired_at=timezone.now())
        data = {"key_id": key.key_id, "public_key": key.public_b64, "retired": retired}
        for tenant_id, slug in (apps.get_model("fcore", "Tenant").objects
                                .order_by("id").values_list("id", "slug")):
            audit_append(tenant_id=tenant_id, stream=admin_stream_name(slug),
                         code=Code.SIGNING_KEY_IN_SERVICE, actor=actor, data=data)
    return True


def public_keys() -> dict[str, bytes]:
    """Every registered public key by id, plus the configured one."""
    keys = {row.key_id: signing.b64decode(row.public_key)
            for row in SigningKey.objects.all()}
    try:
        key = signing_key()
    except ImproperlyConfigured:
        return keys
    keys.setdefault(key.key_id, key.public_raw)
    return keys
