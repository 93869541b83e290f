"""Django admin, scoped to tenants in one way for every page.

A staff person who is not a superuser administers the tenants they are a member of
(`fcore.tenancy.tenants_of`): every admin of a tenant-owned model lists only those tenants'
rows, offers only those tenants in its forms (and refuses any other), and shows only those
tenants (and their rows) in its filters; another tenant's object is absent, as an unknown id is.
A superuser sees every tenant.

A model is tenant-owned when it is `Tenant`, has a `tenant` field, or belongs to a
tenant-owned model by a foreign key (a webhook delivery through its endpoint). The system
check `fcore.E001` refuses an admin of such a model that is not a `TenantScopedAdmin`.
"""

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.core import checks

from fcore.models import Tenant
from fcore.tenancy import tenants_of


class TenantScopedAdmin:
    """ModelAdmin mixin: rows, form choices and filters limited to the person's tenants.

    `tenant_path` is the lookup from the model to its tenant (`"tenant"`, `"pk"` for
    `Tenant` itself, `"endpoint__tenant"`, …)."""

    tenant_path = "tenant"

    def admin_tenants(self, request):
        """The tenants whose rows this person may see here (None: every tenant)."""
        return None if request.user.is_superuser else tenants_of(request.user)

    def form_tenants(self, request):
        """The tenants this person may choose in a form (None: every tenant)."""
        return self.admin_tenants(request)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        tenants = self.admin_tenants(request)
        if tenants is None:
            return queryset
        return queryset.filter(**{f"{self.tenant_path}__in": tenants})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        tenants = self.form_tenants(request)
        if field is not None and db_field.related_model is Tenant and tenants is not None:
            field.queryset = field.queryset.filter(pk__in=tenants)
        return field

    def get_list_filter(self, request):
        # a plain related filter lists every row of the related model (every tenant, every
        # tenant's endpoints) by name; this one only those the scoped rows refer to
        return [(entry, admin.RelatedOnlyFieldListFilter)
                if isinstance(entry, str) and get_fields_from_path(self.model,
                                                                   entry)[-1].is_relation
                else entry for entry in super().get_list_filter(request)]


def tenant_owned(model, _seen: frozenset = frozenset()) -> bool:
    """Whether rows of `model` belong to a tenant (see the module docstring)."""
    if model is Tenant or any(f.name == "tenant" for f in model._meta.get_fields()):
        return True
    return any(
        tenant_owned(f.related_model, _seen | {model}) for f in model._meta.get_fields()
        if f.many_to_one and not f.null and f.related_model not in _seen | {model})


@checks.register(checks.Tags.admin)
def check_admins_tenant_scoped(app_configs=None, site=None, **kwargs):
    """fcore.E001: an admin of a tenant-owned model that is not a TenantScopedAdmin."""
    site = site or admin.site
    errors = []
    for model in apps.get_models():
        if not site.is_registered(model) or not tenant_owned(model):
            continue
        model_admin = site.get_model_admin(model)
        if not isinstance(model_admin, TenantScopedAdmin):
            errors.append(checks.Error(
                f"The admin of {model._meta.label} ({type(model_admin).__name__}) is not "
                f"tenant-scoped: a staff person would see every tenant's rows.",
                hint="Make it a fcore.interfaces.admin.tenancy.TenantScopedAdmin.", obj=model_admin,
                id="fcore.E001"))
    return errors
