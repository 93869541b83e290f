"""System checks for configurations that would quietly weaken a control."""

from django.conf import settings
from django.core.checks import Warning, register

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
