"""Ed25519 signatures of checkpoints. Pure (`cryptography` only); no Django.

Keys travel as standard base64 of their raw 32 bytes. A key's id is the first 16 hex
characters of sha256 of the raw public key, so anyone holding a public key can tell which
checkpoints it signed.
"""

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class BadKey(ValueError):
    """A key that cannot be read."""


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict standard base64 (padding required, no stray characters)."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError, AttributeError):
        raise BadKey("not valid base64") from None


def key_id(public_raw: bytes) -> str:
    """`sha256(raw public key)` in hex, first 16 characters."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def private_key_from_b64(text: str) -> Ed25519PrivateKey:
    raw = b64decode(text)
    if len(raw) != 32:
        raise BadKey(f"an Ed25519 private key is 32 bytes, this one is {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


def public_key_parse(text: str) -> bytes:
    """Raw 32 bytes of a public key given as base64 (raw 32 bytes) or PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError:
            raise BadKey("not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BadKey("not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = b64decode(text)
    if len(raw) != 32:
        raise BadKey(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return raw


def sign(private: Ed25519PrivateKey, message: bytes) -> str:
    """Base64 Ed25519 signature of `message`."""
    return b64encode(private.sign(message))


def signature_valid(public: bytes, message: bytes, signature_b64: str) -> bool:
    """True when `signature_b64` is a valid Ed25519 signature of `message` by `public`."""
    try:
        signature = b64decode(signature_b64)
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (BadKey, InvalidSignature, ValueError):
        return False
    return True
