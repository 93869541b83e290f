"""The signed attestation of an evidence pack: a digest of every field. Pure; no Django.

The hash chain, receipts, workflow_hash and checkpoint prove what was recorded; the other
fields of a pack (timestamps, metadata, decision contexts, …) are what the database held
when the pack was made. The attestation binds them all: for each field path

    format, generated_at, workflow_hash, checkpoint_note     (top-level scalars)
    run.<key>, definition.<key>, stream.<key>, verification.<key>
    steps[i].<key>, decisions[i].<key>, gates[i].<key>, events[i].<key>, receipts[i].<key>

it holds sha256(JCS(value)), and the server signs JCS of the attestation without its
`signature` (Ed25519, a key whose public half is `public_key`, id `key_id`). A verifier
recomputes every digest, so a changed, added or removed field is named precisely.
"""

import hashlib

from .jcs import canonical

ATTESTATION_FORMAT = "fc-attestation/1"
NOT_ATTESTED = ("checkpoint", "attestation")


def field_digests(pack: dict) -> dict[str, str]:
    """`{path: sha256(JCS(value))}` for every attested field of `pack`."""
    digests = {}

    def put(path, value):
        digests[path] = hashlib.sha256(canonical(value)).hexdigest()

    for key, value in pack.items():
        if key in NOT_ATTESTED:
            continue
        if isinstance(value, dict):
            for sub, item in value.items():
                put(f"{key}.{sub}", item)
            if not value:
                put(key, value)
        elif isinstance(value, list):
            for i, element in enumerate(value):
                if isinstance(element, dict):
                    for sub, item in element.items():
                        put(f"{key}[{i}].{sub}", item)
                else:
                    put(f"{key}[{i}]", element)
            put(f"{key}[]", len(value))
        else:
            put(key, value)
    return digests


def attestation_body(*, run_id: str, generated_at: str, key_id: str, public_key: str,
                     fields: dict[str, str]) -> dict:
    """What the attestation signature covers (JCS of this object)."""
    return {"format": ATTESTATION_FORMAT, "run_id": run_id, "generated_at": generated_at,
            "key_id": key_id, "public_key": public_key, "fields": fields}
