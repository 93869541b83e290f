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

from audit.services import admin_stream_name, audit_append

from .models import ApiClient
from .tokens import TOKEN_PREFIX, b64url, b64url_decode, token_mint, token_sign

__all__ = ["TOKEN_PREFIX", "b64url", "b64url_decode", "token_mint", "token_sign",
           "client_secret", "api_client_create", "api_client_revoke"]


def client_secret(salt: str) -> str:
    key = settings.FCORE_CLIENT_KEY.encode()
    return b64url(hmac.new(key, f"fc-client-secret:{salt}".encode(), hashlib.sha256).digest())


def api_client_create(*, tenant, name: str, scopes: list[str], actor: str
                      ) -> tuple[ApiClient, str]:
    """Create a client and return it with its secret (shown once). `FC-ADM-003`."""
    unknown = sorted(set(scopes) - set(ApiClient.SCOPES))
    if unknown or not scopes:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from "
                         f"{' '.join(ApiClient.SCOPES)}" if unknown else "at least one scope")
    salt = secrets.token_urlsafe(24)
    with transaction.atomic():
        client = ApiClient.objects.create(
            tenant=tenant, name=name, kid=f"kid_{secrets.token_hex(8)}", secret_salt=salt,
            scopes=" ".join(sorted(set(scopes))), created_by=actor)
        audit_append(tenant_id=tenant.id, stream=admin_stream_name(tenant.slug),
                     code="FC-ADM-003", actor=actor,
                     data={"name": name, "kid": client.kid, "action": "created",
                           "scopes": client.scopes})
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
                     code="FC-ADM-003", actor=actor,
                     data={"name": client.name, "kid": client.kid, "action": "revoked",
                           "scopes": client.scopes})
