"""API clients and their tokens.

The token format itself is in `fcore.tokens` (no Django, so clients can import it).

A client's secret is `b64url(HMAC-SHA256(FCORE_CLIENT_KEY, "fc-client-secret:" + salt))`;
only the salt is stored, so a database dump alone cannot recover a secret. Rotating
FCORE_CLIENT_KEY invalidates every secret.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.codes import Code
from audit.services import admin_stream_name, audit_append

from .actors import sub_problem
from .models import ApiClient
from .tokens import TOKEN_PREFIX, b64url, b64url_decode, token_mint, token_sign

__all__ = ["TOKEN_PREFIX", "b64url", "b64url_decode", "token_mint", "token_sign",
           "client_secret", "allowed_subs_clean", "api_client_create", "api_client_revoke",
           "api_client_allowed_subs_set"]


def client_secret(salt: str) -> str:
    key = settings.FCORE_CLIENT_KEY.encode()
    return b64url(hmac.new(key, f"fc-client-secret:{salt}".encode(), hashlib.sha256).digest())


def allowed_subs_clean(subs) -> list[str]:
    """The sorted, distinct subs of a list, each a valid sub; raises ValueError."""
    if subs is None:
        return []
    if not isinstance(subs, list | tuple):
        raise ValueError("allowed_subs must be a list of subs")
    for sub in subs:
        problem = sub_problem(sub)
        if problem:
            raise ValueError(f"allowed sub {sub!r} is not valid: {problem}")
    return sorted(set(subs))


def api_client_create(*, tenant, name: str, scopes: list[str], actor: str,
                      allowed_subs: list[str] | None = None) -> tuple[ApiClient, str]:
    """Create a client and return it with its secret (shown once). `FC-ADM-003`.

    `allowed_subs` limits the subs its tokens may name (empty: any valid sub)."""
    allowed_subs = allowed_subs_clean(allowed_subs)
    unknown = sorted(set(scopes) - set(ApiClient.SCOPES))
    if unknown or not scopes:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from "
                         f"{' '.join(ApiClient.SCOPES)}" if unknown else "at least one scope")
    salt = secrets.token_urlsafe(24)
    with transaction.atomic():
        client = ApiClient.objects.create(
            tenant=tenant, name=name, kid=f"kid_{secrets.token_hex(8)}", secret_salt=salt,
            scopes=" ".join(sorted(set(scopes))), allowed_subs=allowed_subs,
            created_by=actor)
        audit_append(tenant_id=tenant.id, stream=admin_stream_name(tenant.slug),
                     code=Code.API_CLIENT_CHANGED, actor=actor,
                     data={"name": name, "kid": client.kid, "action": "created",
                           "scopes": client.scopes, "allowed_subs": allowed_subs})
    return client, client_secret(salt)


def api_client_revoke(*, client: ApiClient, actor: str) -> None:
    """Deactivate a client at once. `FC-ADM-003`."""
    with transaction.atomic():
        client = ApiClient.objects.select_for_update().get(pk=client.pk)
        if not client.active:
            return
        client.active = False
        client.revoked_at = timezone.now()
        client.save(update_fields=["active", "revoked_at"])
        audit_append(tenant_id=client.tenant_id, stream=admin_stream_name(client.tenant.slug),
                     code=Code.API_CLIENT_CHANGED, actor=actor,
                     data={"name": client.name, "kid": client.kid, "action": "revoked",
                           "scopes": client.scopes})


def api_client_allowed_subs_set(*, client: ApiClient, allowed_subs: list[str],
                                actor: str) -> ApiClient:
    """Change the subs a client's tokens may name; takes effect at the next request.
    `FC-ADM-003` with the old and new lists."""
    allowed_subs = allowed_subs_clean(allowed_subs)
    with transaction.atomic():
        client = ApiClient.objects.select_for_update().get(pk=client.pk)
        before = client.allowed_subs
        if before == allowed_subs:
            return client
        client.allowed_subs = allowed_subs
        client.save(update_fields=["allowed_subs"])
        audit_append(tenant_id=client.tenant_id, stream=admin_stream_name(client.tenant.slug),
                     code=Code.API_CLIENT_CHANGED, actor=actor,
                     data={"name": client.name, "kid": client.kid,
                           "action": "changed", "scopes": client.scopes,
                           "allowed_subs": allowed_subs, "allowed_subs_before": before})
    return client
