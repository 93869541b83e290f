"""One-click gate links in emails: signed, expiring, bound to one person, single-use.

A token is `TimestampSigner(salt=SALT).sign_object({"g": gate_id, "u": user_id, "n": nonce})`
(Django's SECRET_KEY signs it). It expires after `FCORE_GATE_LINK_MAX_AGE_S`.

Opening a link (GET) only reads the token and shows the gate: it never decides and writes
nothing. Deciding is a POST by the signed-in recipient through
`runs.services.run_gate_vote(..., link=claim)`, which calls `link_consume` inside the vote's
transaction: the nonce goes into `GateLinkUse` (unique), so the link decides at most once,
and a vote that is refused leaves the link unused.
"""

import secrets
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction

from fcore.errors import ErrorCode, FCError

from ..models import GateLinkUse

SALT = "fcore.gates.review-link"


class LinkRefused(FCError):
    """A link that cannot be used; `code` says why (see `link_token_read`)."""

    status, code = 403, "link_invalid"


@dataclass(frozen=True)
class LinkClaim:
    """What a valid token says: this gate, for this user, with this single-use nonce."""

    gate_id: int
    user_id: int
    nonce: str


def link_token_make(*, gate_id: int, user_id: int) -> str:
    """A fresh signed token for `user_id` to review `gate_id`."""
    payload = {"g": gate_id, "u": user_id, "n": secrets.token_urlsafe(16)}
    return signing.TimestampSigner(salt=SALT).sign_object(payload, compress=False)


def link_url(*, gate_id: int, token: str) -> str:
    """The absolute review URL carried by an email."""
    return (f"{settings.FCORE_PUBLIC_URL}/console/gates/{gate_id}/review"
            f"?t={quote(token, safe='')}")


def link_token_read(token: str, *, gate_id: int, user_id: int,
                    max_age: int | None = None) -> LinkClaim:
    """Check a token for this gate and this signed-in user; raises LinkRefused with code
    `link_invalid`, `link_expired`, `link_wrong_user` or `link_used`. Reads only."""
    max_age = settings.FCORE_GATE_LINK_MAX_AGE_S if max_age is None else max_age
    signer = signing.TimestampSigner(salt=SALT)
    try:
        payload = signer.unsign_object(token or "", max_age=max_age)
    except signing.SignatureExpired:
        raise LinkRefused("This link has expired; open the gate from the console.",
                          code=ErrorCode.LINK_EXPIRED) from None
    except (signing.BadSignature, ValueError, TypeError):
        raise LinkRefused("This link is not valid.", code=ErrorCode.LINK_INVALID) from None
    if (not isinstance(payload, dict) or payload.get("g") != gate_id
            or not isinstance(payload.get("u"), int) or not isinstance(payload.get("n"), str)):
        raise LinkRefused("This link is not valid.", code=ErrorCode.LINK_INVALID)
    if payload["u"] != user_id:
        raise LinkRefused("This link was sent to someone else; sign in as its recipient.",
                          code=ErrorCode.LINK_WRONG_USER)
    claim = LinkClaim(gate_id=gate_id, user_id=user_id, nonce=payload["n"])
    if GateLinkUse.objects.filter(nonce=claim.nonce).exists():
        raise LinkRefused("This link has already been used.", code=ErrorCode.LINK_USED)
    return claim


def link_consume(claim: LinkClaim, *, gate) -> None:
    """Mark the link used; must run in the transaction of the decision it carries."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("link_consume must run inside the transaction of the vote")
    if claim.gate_id != gate.id:
        raise LinkRefused("This link is not valid.", code=ErrorCode.LINK_INVALID)
    try:
        with transaction.atomic():
            GateLinkUse.objects.create(nonce=claim.nonce, gate=gate, user_id=claim.user_id)
    except IntegrityError:
        raise LinkRefused("This link has already been used.", code=ErrorCode.LINK_USED) from None
