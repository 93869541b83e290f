"""System checks for configurations that would quietly weaken a control."""

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache",
                      "django.core.cache.backends.dummy.DummyCache")


@register("fcore", deploy=True)
def throttle_cache_shared(app_configs, **kwargs):
    """fcore.W001: the failed-token and rate-limit counters need a cache every web process
    shares; in a per-process cache each process counts alone."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PER_PROCESS_CACHES:
        return []
    return [Warning(
        "The default cache is per process: each web process counts failed API "
        "authentications on its own.",
        hint="Set FCORE_CACHE_URL=redis://… so every process shares the counters.",
        id="fcore.W001")]


SIGNING_KEY_HINT = (
    "Set FCORE_SIGNING_KEY to the standard base64 of a raw 32-byte Ed25519 private key, or "
    "FCORE_SIGNING_KEY_FILE to a file holding it, the same on every machine; make one with "
    "python -c \"import base64, os; print(base64.b64encode(os.urandom(32)).decode())\".")


@register("fcore")
def signing_key_configured(app_configs, **kwargs):
    """fcore.E002: production (FCORE_ENV=production) signs checkpoints with a configured key.

    Without one, each machine would make its own and retire the others' at start-up; so
    production creates none, and this check stops `serve`, `migrate` and `check` until a
    usable key is set."""
    if not settings.PRODUCTION:
        return []
    if not (settings.FCORE_SIGNING_KEY or settings.FCORE_SIGNING_KEY_FILE):
        return [Error("Production needs a checkpoint signing key, and none is configured.",
                      hint=SIGNING_KEY_HINT, id="fcore.E002")]
    from audit.keys import signing_key

    try:
        signing_key()
    except ImproperlyConfigured as exc:
        return [Error(f"The checkpoint signing key cannot be used: {exc}.",
                      hint=SIGNING_KEY_HINT, id="fcore.E002")]
    return []


OIDC_REQUIRED = {
    "FCORE_OIDC_CLIENT_ID": "OIDC_RP_CLIENT_ID",
    "FCORE_OIDC_CLIENT_SECRET": "OIDC_RP_CLIENT_SECRET",
    "FCORE_OIDC_AUTHORIZATION_ENDPOINT": "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "FCORE_OIDC_TOKEN_ENDPOINT": "OIDC_OP_TOKEN_ENDPOINT",
    "FCORE_OIDC_USERINFO_ENDPOINT": "OIDC_OP_USER_ENDPOINT",
    "FCORE_OIDC_JWKS_ENDPOINT": "OIDC_OP_JWKS_ENDPOINT",
}


@register("fcore")
def oidc_configured(app_configs, **kwargs):
    """fcore.E003: with an OIDC provider (FCORE_OIDC_ISSUER), its client, its endpoints and
    a readable FCORE_OIDC_GROUP_MAP; a wrong map would sign people in without their groups."""
    if not settings.FCORE_OIDC_ENABLED:
        return []
    from fcore.oidc import group_map_parse

    errors = [Error(f"{env} is not set, and the OIDC provider needs it.",
                    hint="docs/security.md, \"Signing in with an identity provider\".",
                    id="fcore.E003")
              for env, name in OIDC_REQUIRED.items() if not getattr(settings, name)]
    try:
        group_map_parse(settings.FCORE_OIDC_GROUP_MAP)
    except ValueError as exc:
        errors.append(Error(str(exc), id="fcore.E003"))
    return errors
