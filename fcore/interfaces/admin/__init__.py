"""Django admin: one module per app's models, every page tenant-scoped (`tenancy`).

Imported by `fcore.admin`, the module Django's admin autodiscovery finds."""

from . import audit, gates, members, policies, runs, schedules, tenants  # noqa: F401  (register pages)
