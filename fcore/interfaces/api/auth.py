"""Bearer-token authentication, scope permission and throttling for the API.

Checks, in order: the `omega_` shape, the key id (an active client), the tenant, the
signature (constant time), `exp` (at most FCORE_TOKEN_MAX_LIFETIME_S after `iat`, with
FCORE_TOKEN_LEEWAY_S of leeway), the subject (`fcore.actors.sub_problem`, and the client's
`allowed_subs` when it has any) and then, per view, the scope. Every failure is a 401
`authentication_failed` whose detail says what was wrong but never echoes the token.
"""

import hmac
import json
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication

from fcore.actors import sub_problem
from fcore.clients import TOKEN_PREFIX, b64url_decode, client_secret, token_sign
from fcore.models import ApiClient
from fcore.proxies import client_ip
from fcore.rows import Rows
from fcore.tenancy import principal_for_client, request_principal, tenant_known

log = logging.getLogger("fcore.interfaces.api.auth")


class TokenUser:
    """The `request.user` of a token request: a machine, never staff."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False

    def __init__(self, actor: str):
        self.actor = actor
        self.pk = None

    def get_username(self) -> str:
        return self.actor

    def __str__(self) -> str:
        return self.actor


def _fail(detail: str):
    return exceptions.AuthenticationFailed(detail)


@dataclass(frozen=True)
class ParsedToken:
    """A well-formed token's parts and claims, not yet verified."""

    payload_b64: str
    signature: str
    claims: dict


CLAIM_TYPES = {"kid": str, "sub": str, "tenant": str, "iat": int, "exp": int, "scope": str}


def token_parse(token: str) -> ParsedToken:
    """Split and decode a token or raise AuthenticationFailed; checks nothing it asserts."""
    if not token.startswith(TOKEN_PREFIX) or token.count(".") != 1:
        raise _fail("Malformed token.")
    payload_b64, signature = token[len(TOKEN_PREFIX):].split(".", 1)
    try:
        claims = json.loads(b64url_decode(payload_b64))
    except (ValueError, UnicodeDecodeError):
        raise _fail("Malformed token.") from None
    if not isinstance(claims, dict) or any(
            not isinstance(claims.get(k), t) or isinstance(claims.get(k), bool)
            for k, t in CLAIM_TYPES.items()):
        raise _fail("Malformed token claims.")
    return ParsedToken(payload_b64, signature, claims)


# The active client a token names: read for every request (`fcore.rows`).
ACTIVE_CLIENT = Rows(ApiClient, """
    SELECT {columns} FROM fcore_apiclient c WHERE c.kid = %s AND c.active""", alias="c")


def token_client(parsed: ParsedToken) -> ApiClient | None:
    """The active client the token's `kid` names, if any, with its tenant as
    `tenant_known` gives it (no join)."""
    client = ACTIVE_CLIENT.first([parsed.claims["kid"]])
    if client is not None:
        client.tenant = tenant_known(client.tenant_id)
    return client


def token_check(parsed: ParsedToken, client: ApiClient | None, *,
                now: float | None = None) -> None:
    """Verify a parsed token against its client or raise AuthenticationFailed."""
    claims = parsed.claims
    if client is None:
        raise _fail("Unknown or revoked key.")
    expected = token_sign(parsed.payload_b64, client_secret(client.secret_salt))
    if not hmac.compare_digest(expected.encode(), parsed.signature.encode()):
        raise _fail("Bad signature.")
    if claims["tenant"] != client.tenant.slug:
        raise _fail("Token tenant does not match the key.")
    now = time.time() if now is None else now
    leeway = settings.FCORE_TOKEN_LEEWAY_S
    if claims["exp"] - claims["iat"] > settings.FCORE_TOKEN_MAX_LIFETIME_S:
        raise _fail("Token lifetime exceeds the maximum of one hour.")
    if claims["iat"] > now + leeway:
        raise _fail("Token issued in the future.")
    if now > claims["exp"] + leeway:
        raise _fail("Token expired.")
    problem = sub_problem(claims["sub"])
    if problem:
        raise _fail(f"Token subject (sub) is not valid: {problem}.")
    if client.allowed_subs and claims["sub"] not in client.allowed_subs:
        raise _fail("This key may not act as that subject (sub): it is not in the "
                    "client's allowed_subs.")


def token_verify(token: str, *, now: float | None = None):
    """Return (client, claims) for a valid token or raise AuthenticationFailed."""
    parsed = token_parse(token)
    client = token_client(parsed)
    token_check(parsed, client, now=now)
    return client, parsed.claims


def _failure_key(request, client: ApiClient | None) -> str:
    """One counter per key and address when the token names a live key, so a client
    that keeps failing does not lock out the other clients behind the same proxy (nor
    a stranger the key); else one per address, so made-up key ids do not escape it."""
    address = client_ip(request)
    if client is not None:
        return f"fc:authfail:kid:{client.kid}:{address}"
    return f"fc:authfail:addr:{address}"


def _too_many_failures(key: str) -> bool:
    return cache.get(key, 0) >= settings.FCORE_AUTH_FAILURE_LIMIT


def _count_failure(key: str) -> None:
    # add + incr are atomic in the cache (Redis: SET NX, INCR): processes share the count
    if cache.add(key, 1, timeout=settings.FCORE_AUTH_FAILURE_WINDOW_S):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=settings.FCORE_AUTH_FAILURE_WINDOW_S)


def _bearer_parse(header: str) -> ParsedToken:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _fail("Use 'Authorization: Bearer <token>'.")
    return token_parse(token.strip())


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer omega_…`; absent header → other authenticators run.

    Failed attempts are logged (never the token) and counted per key and client address
    (per address when the token names no live key; the address through
    FCORE_TRUSTED_PROXIES): past FCORE_AUTH_FAILURE_LIMIT in FCORE_AUTH_FAILURE_WINDOW_S,
    that counter answers 429 until the window passes, valid token or not."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parsed, client, problem = None, None, None
        try:
            parsed = _bearer_parse(header)
            client = token_client(parsed)
        except exceptions.AuthenticationFailed as exc:
            problem = exc
        key = _failure_key(request, client)
        if _too_many_failures(key):
            log.warning("authentication throttled for %s", key.removeprefix("fc:authfail:"))
            raise exceptions.Throttled(wait=settings.FCORE_AUTH_FAILURE_WINDOW_S,
                                       detail="Too many failed authentications.")
        try:
            if problem is not None:
                raise problem
            token_check(parsed, client)
        except exceptions.AuthenticationFailed as exc:
            _count_failure(key)
            log.warning("token rejected: %s (from %s)", exc.detail, client_ip(request))
            raise
        claims = parsed.claims
        scopes = set(claims["scope"].split()) & client.scope_set
        principal = principal_for_client(client, claims["sub"], scopes)
        request._request._fc_principal = principal
        return TokenUser(principal.actor), client

    def authenticate_header(self, request):
        return 'Bearer realm="federation-core"'


class HasTenantScope(permissions.BasePermission):
    """The caller belongs to a tenant and holds the scope the view names for the method.

    Views set `required_scopes = {"GET": "runs:read", "POST": "runs:write", …}`.
    """

    message = "Missing scope."

    def has_permission(self, request, view):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
        principal = request_principal(request._request)
        if principal is None:
            raise exceptions.PermissionDenied("You are not a member of any tenant.")
        request.principal = principal
        needed = getattr(view, "required_scopes", {}).get(request.method)
        if needed and not principal.has_scope(needed):
            raise exceptions.PermissionDenied(f"This needs the '{needed}' scope.")
        return True


class ActorRateThrottle(throttling.SimpleRateThrottle):
    """Per-actor rate limit (per address when unauthenticated). Not a security boundary."""

    scope = "actor"

    def get_cache_key(self, request, view):
        principal = getattr(request._request, "_fc_principal", None)
        ident = principal.actor if principal else client_ip(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
