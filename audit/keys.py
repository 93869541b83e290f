"""The checkpoint signing key: read from settings, its public half registered in the database.

`FCORE_SIGNING_KEY` (base64 of the raw 32-byte Ed25519 private key) wins over
`FCORE_SIGNING_KEY_FILE` (a file holding the same). Rotating means configuring a new key:
it gets a new key id, `signing_key_register` records its public half and retires the
others, and checkpoints signed by the old key still verify against its registered public
key. The private key is never written to the database.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from . import signing
from .models import SigningKey


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


def signing_key_register(key: ActiveKey) -> SigningKey:
    """Record the public half of `key` and retire every other key; idempotent."""
    row, _ = SigningKey.objects.get_or_create(key_id=key.key_id,
                                              defaults={"public_key": key.public_b64})
    if row.retired_at is not None:  # a key brought back into service
        SigningKey.objects.filter(pk=row.pk).update(retired_at=None)
    (SigningKey.objects.filter(retired_at__isnull=True).exclude(pk=row.pk)
     .update(retired_at=timezone.now()))
    return row


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
