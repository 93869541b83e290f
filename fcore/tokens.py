"""The `omega_` token format, with no Django dependency (clients import it too).

    token = "omega_" + p + "." + s
    p = b64url(JSON{kid, sub, tenant, iat, exp, scope})
    s = b64url(HMAC-SHA256(client_secret, "omega_" + p))

base64url without padding.
"""

import base64
import hashlib
import hmac
import json
import time

TOKEN_PREFIX = "omega_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_sign(payload_b64: str, secret: str) -> str:
    message = (TOKEN_PREFIX + payload_b64).encode("ascii")
    return b64url(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def token_mint(*, kid: str, secret: str, sub: str, tenant: str, scope: str,
               lifetime_s: int = 900, now: int | None = None) -> str:
    """Mint a token from a client's secret, as any client does."""
    iat = int(now if now is not None else time.time())
    payload = {"kid": kid, "sub": sub, "tenant": tenant, "iat": iat, "exp": iat + lifetime_s,
               "scope": scope}
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}{p}.{token_sign(p, secret)}"
