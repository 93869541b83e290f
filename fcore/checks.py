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
