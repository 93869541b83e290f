"""C2SP signed notes (Ed25519) carrying C2SP tlog-checkpoint bodies. Pure; no Django.

A checkpoint body is three lines, each ending in a newline:

    <origin>                    e.g. fcore.example/audit/acme (the tenant's log)
    <tree size, decimal>
    <base64 of the 32-byte root hash>

The signed note is the body, a blank line, and one signature line per key:
`— <key name> <base64(key hash || signature)>` where the key name is the origin, the
4-byte key hash is sha256(key name || 0x0A || 0x01 || raw public key)[:4] and the
Ed25519 signature covers the body bytes exactly. A verifier key is written
`<name>+<hex key hash>+<base64(0x01 || raw public key)>` (what golang.org/x/mod/sumdb/note
reads).
"""

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALG_ED25519 = b"\x01"
_SIG_PREFIX = "\u2014 "
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


class BadNote(ValueError):
    """A note or checkpoint that cannot be read or does not verify."""


def key_hash(name: str, public_raw: bytes) -> bytes:
    """The 4-byte key hash of an Ed25519 key under `name`."""
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public_raw).digest()[:4]


def verifier_key(name: str, public_raw: bytes) -> str:
    """`name+hash+key`: the verifier key string of the signed-note spec."""
    return (f"{name}+{key_hash(name, public_raw).hex()}+"
            f"{base64.b64encode(ALG_ED25519 + public_raw).decode()}")


def name_valid(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) \
        and name.isprintable()


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The tlog-checkpoint body (no extension lines)."""
    if not name_valid(origin) or len(root) != 32 or size < 0:
        raise BadNote("origin, size or root is malformed")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def note_sign(text: str, name: str, private) -> str:
    """The signed note of `text` by an Ed25519 private key, under key name `name`."""
    public_raw = private.public_key().public_bytes_raw()
    signature = private.sign(text.encode())
    blob = base64.b64encode(key_hash(name, public_raw) + signature).decode()
    return f"{text}\n{_SIG_PREFIX}{name} {blob}\n"


def note_split(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """(text, [(key name, key hash, signature)]) of a signed note; strict."""
    if not isinstance(note, str) or any(c < " " and c != "\n" for c in note):
        raise BadNote("not a note: control characters")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise BadNote("not a signed note: no blank line before the signatures")
    text, block = note[:cut + 1], note[cut + 2:]
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX) or line.count(" ") != 2:
            raise BadNote("malformed signature line")
        name, blob = line[len(_SIG_PREFIX):].split(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise BadNote("signature is not base64") from None
        if not name_valid(name) or len(raw) < 5:
            raise BadNote("malformed signature line")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def note_verify(note: str, name: str, public_raw: bytes) -> str:
    """The text of `note` if it carries a valid signature by (`name`, `public_raw`)."""
    text, signatures = note_split(note)
    wanted = key_hash(name, public_raw)
    for sig_name, sig_hash, signature in signatures:
        if sig_name == name and sig_hash == wanted:
            try:
                Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, text.encode())
            except (InvalidSignature, ValueError):
                raise BadNote(f"the signature by {name} does not verify") from None
            return text
    raise BadNote(f"no signature by key {name}+{wanted.hex()}")


def checkpoint_parse(text: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root) of a tlog-checkpoint body; extension lines are refused."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise BadNote("a checkpoint is exactly three lines (origin, size, root)")
    origin, size, root_b64 = lines[:3]
    if not name_valid(origin) or not _SIZE.fullmatch(size):
        raise BadNote("malformed origin or tree size")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadNote("root hash is not base64") from None
    if len(root) != 32:
        raise BadNote("root hash is not 32 bytes")
    return origin, int(size), root
