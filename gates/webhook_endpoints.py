"""Webhook endpoints: what one may be, and the services that create, change and delete them.

Every change is an administrative change: it lands in the tenant's admin stream
(`tenant/<slug>/admin`) as `FC-ADM-004` in the transaction that makes it, so the change and
its event commit or roll back together. Lock order: the endpoint row, then the stream head.

The event holds the endpoint's id, the action and its non-secret fields (`name`, `url`,
`events`, `active`); a change adds `changes` ({field: [old, new]}) and is recorded only when
a field really changed. The signing secret never enters an event: it is set once, at
creation, and no service changes it afterwards. It is stored encrypted (`fcore.secret_box`,
a key from settings): the server must sign with it, so a hash would not do, and a database
dump alone does not give it away.

Secrets are in the Standard Webhooks format: `whsec_` + standard base64 of 32 random key
bytes (`webhook_secret_key` decodes them). Secrets made before that (`whsec_` + 43
URL-safe characters, no padding: not valid standard base64) stay valid: their key is their
own UTF-8 bytes, the key the `X-FC-Signature` scheme always used, so nothing a receiver
holds has to change (docs/api.md, "Secrets made before Standard Webhooks").

Query-string values of the URL are recorded as `***`, in case a receiver put a token there
(credentials in the URL's user part are refused outright).
"""

import base64
import binascii
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction

from audit.codes import Code
from audit.services import admin_stream_name, audit_append
from fcore.errors import BadRequest, ErrorCode, NotFound
from fcore.secret_box import secret_open, secret_seal

from .models import DEFAULT_EVENTS, NOTIFY_EVENTS, WebhookEndpoint

AUDIT_CODE = Code.WEBHOOK_ENDPOINT_CHANGED
REDACTED = "***"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Standard Webhooks: a symmetric key is random, 24 bytes at least and 64 at most.
SECRET_KEY_BYTES_RANGE = (24, 64)


# --- what an endpoint may be --------------------------------------------------------------

def webhook_url_problem(url: str) -> str | None:
    """Why a URL may not receive webhooks (None when it may)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http or https URL"
    if parts.username or parts.password:
        return "no credentials in the URL; verify the signature instead"
    if parts.hostname.lower() not in settings.FCORE_WEBHOOK_ALLOWED_HOSTS:
        return (f"host {parts.hostname!r} is not in FCORE_WEBHOOK_ALLOWED_HOSTS "
                f"({', '.join(settings.FCORE_WEBHOOK_ALLOWED_HOSTS) or 'empty'})")
    return None


def webhook_events_problem(events) -> str | None:
    """Why an events list is not valid (None when it is)."""
    if not isinstance(events, list) or not events or not all(
            isinstance(e, str) and e in NOTIFY_EVENTS for e in events):
        return f"a non-empty list of {', '.join(NOTIFY_EVENTS)}"
    return None


def webhook_secret_new() -> str:
    """A new signing secret, Standard Webhooks format: `whsec_` + base64 of 32 random bytes."""
    key = secrets.token_bytes(SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def _standard_key(secret: str) -> bytes | None:
    """The key bytes of a Standard Webhooks secret; None when `secret` is not one."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return None
    low, high = SECRET_KEY_BYTES_RANGE
    return key if low <= len(key) <= high else None


def webhook_secret_is_standard(secret: str) -> bool:
    """The secret is `whsec_` + standard base64 of a 24–64 byte key (not a legacy one)."""
    return _standard_key(secret) is not None


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of `webhook-signature`: the decoded bytes of a Standard Webhooks secret,
    or, for a legacy secret, its UTF-8 bytes (what `X-FC-Signature` has always used)."""
    return _standard_key(secret) or secret.encode()


def webhook_endpoint_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret, decrypted (to sign a delivery; never to show)."""
    return secret_open(endpoint.secret_encrypted)


def _checked(*, name: str, url: str, events) -> str:
    """The stripped name; BadRequest naming every field at fault."""
    errors = {field: [problem] for field, problem in
              (("url", webhook_url_problem(url)), ("events", webhook_events_problem(events)))
              if problem}
    if not (name or "").strip():
        errors["name"] = ["a name"]
    if errors:
        raise BadRequest("Invalid webhook endpoint.", code=ErrorCode.INVALID, errors=errors)
    return name.strip()


# --- the audit event ----------------------------------------------------------------------

def webhook_url_for_audit(url: str) -> str:
    """The URL as an audit event records it: query-string values replaced by `***`."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = urlencode([(key, REDACTED) for key, _ in parse_qsl(parts.query,
                                                               keep_blank_values=True)],
                      safe="*")
    return urlunsplit(parts._replace(query=query))


def _audited_fields(endpoint: WebhookEndpoint) -> dict:
    """The fields an event may show; never `secret`."""
    return {"name": endpoint.name, "url": webhook_url_for_audit(endpoint.url),
            "events": list(endpoint.events or []), "active": endpoint.active}


def _record(*, endpoint: WebhookEndpoint, tenant, action: str, actor: str, **extra) -> None:
    audit_append(tenant_id=tenant.id, stream=admin_stream_name(tenant.slug), code=AUDIT_CODE,
                 actor=actor, data={"endpoint_id": endpoint.pk, "action": action,
                                    **_audited_fields(endpoint), **extra})


# --- services -----------------------------------------------------------------------------

def webhook_endpoint_create(*, tenant, name: str, url: str, events: list[str] | None = None,
                            active: bool = True, actor: str) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint (`FC-ADM-004` created); returns it with its signing secret, to be
    shown once."""
    events = list(DEFAULT_EVENTS) if events is None else events
    name = _checked(name=name, url=url, events=events)
    secret = webhook_secret_new()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            tenant=tenant, name=name, url=url, secret_encrypted=secret_seal(secret),
            events=events, active=bool(active), created_by=actor)
        _record(endpoint=endpoint, tenant=tenant, action="created", actor=actor)
    return endpoint, secret


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, actor: str, name: str | None = None,
                            url: str | None = None, events: list[str] | None = None,
                            active: bool | None = None) -> tuple[WebhookEndpoint, bool]:
    """Change the given fields (None: keep); `FC-ADM-004` changed with the diff when any
    field really changed, nothing at all otherwise. Returns (endpoint, changed)."""
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        if current is None:  # deleted meanwhile
            raise NotFound("No such webhook endpoint.")
        wanted = {"name": current.name if name is None else name,
                  "url": current.url if url is None else url,
                  "events": current.events if events is None else events,
                  "active": current.active if active is None else bool(active)}
        wanted["name"] = _checked(name=wanted["name"], url=wanted["url"],
                                  events=wanted["events"])
        before = _audited_fields(current)
        fields = [field for field, value in wanted.items() if getattr(current, field) != value]
        if not fields:
            return current, False
        for field in fields:
            setattr(current, field, wanted[field])
        current.save(update_fields=fields)
        after = _audited_fields(current)
        _record(endpoint=current, tenant=current.tenant, action="changed", actor=actor,
                changes={field: [before[field], after[field]] for field in fields})
    return current, True


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: str) -> bool:
    """Delete an endpoint and its delivery log (`FC-ADM-004` deleted, with the fields it
    had). False when it was already gone."""
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        if current is None:
            return False
        tenant, endpoint_id = current.tenant, current.pk
        _, deleted = current.delete()
        current.pk = endpoint_id  # delete() clears it; the event names the endpoint
        _record(endpoint=current, tenant=tenant, action="deleted", actor=actor,
                deliveries_deleted=deleted.get("gates.WebhookDelivery", 0))
    return True

