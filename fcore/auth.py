"""Bearer-token authentication, scope permission and throttling for the API.

Checks, in order: the `omega_` shape, the key id (an active client), the tenant, the
signature (constant time), `exp` (at most FCORE_TOKEN_MAX_LIFETIME_S after `iat`, with
FCORE_TOKEN_LEEWAY_S of leeway) and then, per view, the scope. Every failure is a 401
`authentication_failed` whose detail says what was wrong but never echoes the token.
"""

import hmac
import json
import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication

from .clients import TOKEN_PREFIX, b64url_decode, client_secret, token_sign
from .models import ApiClient
from .tenancy import principal_for_client, request_principal

log = logging.getLogger("fcore.auth")


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


def token_verify(token: str, *, now: float | None = None):
    """Return (client, claims) for a valid token or raise AuthenticationFailed."""
    if not token.startswith(TOKEN_PREFIX) or token.count(".") != 1:
        raise _fail("Malformed token.")
    payload_b64, signature = token[len(TOKEN_PREFIX):].split(".", 1)
    try:
        claims = json.loads(b64url_decode(payload_b64))
    except (ValueError, UnicodeDecodeError):
        raise _fail("Malformed token.") from None
    required = {"kid": str, "sub": str, "tenant": str, "iat": int, "exp": int, "scope": str}
    if not isinstance(claims, dict) or any(
            not isinstance(claims.get(k), t) or isinstance(claims.get(k), bool)
            for k, t in required.items()):
        raise _fail("Malformed token claims.")
    client = (ApiClient.objects.select_related("tenant")
              .filter(kid=claims["kid"], active=True).first())
    if client is None:
        raise _fail("Unknown or revoked key.")
    expected = token_sign(payload_b64, client_secret(client.secret_salt))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
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
    if not claims["sub"].strip():
        raise _fail("Token has no subject.")
    return client, claims


def _failure_key(request) -> str:
    return f"fc:authfail:{request.META.get('REMOTE_ADDR', '?')}"


def _too_many_failures(request) -> bool:
    return cache.get(_failure_key(request), 0) >= settings.FCORE_AUTH_FAILURE_LIMIT


def _count_failure(request) -> None:
    key = _failure_key(request)
    if cache.add(key, 1, timeout=settings.FCORE_AUTH_FAILURE_WINDOW_S):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=settings.FCORE_AUTH_FAILURE_WINDOW_S)


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer omega_…`; absent header → other authenticators run.

    Failed attempts are logged (never the token) and counted per address: past
    FCORE_AUTH_FAILURE_LIMIT in FCORE_AUTH_FAILURE_WINDOW_S, the address gets 429 until
    the window passes, valid token or not."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        if _too_many_failures(request):
            log.warning("authentication throttled for %s", request.META.get("REMOTE_ADDR", "?"))
            raise exceptions.Throttled(wait=settings.FCORE_AUTH_FAILURE_WINDOW_S,
                                       detail="Too many failed authentications.")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise _fail("Use 'Authorization: Bearer <token>'.")
            client, claims = token_verify(token.strip())
        except exceptions.AuthenticationFailed as exc:
            _count_failure(request)
            log.warning("token rejected: %s (from %s)", exc.detail,
                        request.META.get("REMOTE_ADDR", "?"))
            raise
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
        ident = principal.actor if principal else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
