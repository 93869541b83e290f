"""Django's admin imports `<app>.admin` of each app: this one registers every admin page,
all of which live in the interface layer (`fcore.interfaces.admin`), so that no domain app
imports the admin's tenant scoping from above."""

from fcore.interfaces import admin  # noqa: F401  (registers every admin page)
