"""Secrets the server must use again (webhook signing secrets), encrypted at rest.

A database dump alone must not give them away, yet the server signs with them, so they
cannot be stored as hashes: they are stored as Fernet tokens (AES-128-CBC + HMAC-SHA256,
from `cryptography`) under a key that never enters the database.

`FCORE_SECRET_ENCRYPTION_KEY` holds one or more comma-separated Fernet keys: the first
encrypts, every one decrypts, so a new key is put first and the old one kept after it for
as long as tokens under it remain. When it is unset (the embedded default) the key is derived
from `SECRET_KEY` by HKDF-SHA256; production refuses to start without it (settings), so
that rotating `SECRET_KEY` never makes the stored secrets unreadable.

API-client secrets need none of this: they are derived from `FCORE_CLIENT_KEY` and a salt,
and only the salt is stored (`fcore.clients`).
"""

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

HKDF_INFO = b"fcore secret encryption v1"

__all__ = ["InvalidToken", "secret_seal", "secret_open"]


def _derived_key(secret_key: str) -> bytes:
    """A Fernet key derived from SECRET_KEY (only when no key is configured)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


@lru_cache(maxsize=4)
def _box(configured: str, secret_key: str) -> MultiFernet:
    keys = [k.strip() for k in configured.split(",") if k.strip()]
    try:
        fernets = [Fernet(k) for k in keys] or [Fernet(_derived_key(secret_key))]
    except ValueError:
        raise ImproperlyConfigured(
            "FCORE_SECRET_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded "
            "bytes), comma-separated") from None
    return MultiFernet(fernets)


def _current_box() -> MultiFernet:
    # keyed on the settings' values, so a changed setting (tests, rotation) is honoured
    return _box(settings.FCORE_SECRET_ENCRYPTION_KEY, settings.SECRET_KEY)


def secret_seal(plain: str) -> str:
    """The secret encrypted under the current key (a Fernet token, ASCII)."""
    return _current_box().encrypt(plain.encode()).decode("ascii")


def secret_open(sealed: str) -> str:
    """The secret back from its token; `InvalidToken` when no configured key opens it."""
    return _current_box().decrypt(sealed.encode("ascii")).decode()

