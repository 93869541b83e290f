"""DSSE envelopes (Dead Simple Signing Envelope v1) signed with Ed25519. Pure; no Django.

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    envelope        = {"payload": base64(body), "payloadType": type,
                       "signatures": [{"keyid": key id, "sig": base64(Ed25519(PAE))}]}

LEN is the byte length in ASCII decimal; base64 is the standard alphabet with padding.
"""

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
ENVELOPE_FIELDS = {"payload", "payloadType", "signatures"}
SIGNATURE_FIELDS = {"keyid", "sig"}


class BadEnvelope(ValueError):
    """An envelope that is malformed or whose signature does not verify."""


def pae(payload_type: str, body: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def envelope_sign(body: bytes, *, payload_type: str, private, key_id: str) -> dict:
    signature = private.sign(pae(payload_type, body))
    return {"payload": base64.b64encode(body).decode(), "payloadType": payload_type,
            "signatures": [{"keyid": key_id, "sig": base64.b64encode(signature).decode()}]}


def _b64(text, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadEnvelope(f"{what} is not base64") from None


def envelope_open(envelope, keys: dict[str, bytes]) -> tuple[bytes, str]:
    """(payload, key id) of an envelope with a valid signature by one of `keys`
    ({key id: raw Ed25519 public key}). Unknown fields are refused."""
    if not isinstance(envelope, dict) or set(envelope) != ENVELOPE_FIELDS:
        raise BadEnvelope("an envelope has exactly payload, payloadType and signatures")
    kind, signatures = envelope["payloadType"], envelope["signatures"]
    if not isinstance(kind, str) or not isinstance(signatures, list) or not signatures:
        raise BadEnvelope("payloadType or signatures malformed")
    body = _b64(envelope["payload"], "payload")
    for signature in signatures:
        if not isinstance(signature, dict) or set(signature) != SIGNATURE_FIELDS:
            raise BadEnvelope("a signature has exactly keyid and sig")
        public = keys.get(signature["keyid"])
        if public is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(
                _b64(signature["sig"], "sig"), pae(kind, body))
        except (InvalidSignature, ValueError):
            raise BadEnvelope(f"the signature by key {signature['keyid']} does not "
                              "verify") from None
        return body, signature["keyid"]
    raise BadEnvelope("no signature by a trusted key")
