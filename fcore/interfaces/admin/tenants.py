"""Admin for tenants and API clients, tenant-scoped (`fcore.interfaces.admin.tenancy`); memberships,
people and groups are in `members`. Creating a client shows its secret once, on the
response page; revoking goes through the service so it is audited."""

from django import forms
from django.contrib import admin, messages
from django.db import models

from fcore.actors import user_actor
from fcore.clients import (
    allowed_subs_clean,
    api_client_allowed_subs_set,
    api_client_create,
    api_client_revoke,
)
from fcore.jsonlimits import CheckedJSONField
from fcore.models import ApiClient, Tenant

from .secrets import OneTimeSecretAdmin
from .tenancy import TenantScopedAdmin


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin, admin.ModelAdmin):
    tenant_path = "pk"
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    formfield_overrides = {models.JSONField: {"form_class": CheckedJSONField}}

    def get_readonly_fields(self, request, obj=None):
        # a tenant's slug is fixed once it exists: tokens, stream names and the processes'
        # caches (`fcore.tenancy.tenant_known`) carry it
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "slug") if obj is not None else fields


class ApiClientForm(forms.ModelForm):
    def clean_allowed_subs(self):
        try:
            return allowed_subs_clean(self.cleaned_data["allowed_subs"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(ApiClient)
class ApiClientAdmin(TenantScopedAdmin, OneTimeSecretAdmin, admin.ModelAdmin):
    form = ApiClientForm
    formfield_overrides = {models.JSONField: {"form_class": CheckedJSONField}}
    list_display = ("name", "tenant", "kid", "scopes", "active", "created_by", "created_at")
    list_filter = ("tenant", "active")
    readonly_fields = ("kid", "secret_salt", "created_by", "created_at", "revoked_at")
    fields = ("tenant", "name", "scopes", "allowed_subs", "active") + readonly_fields
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        actor = user_actor(request.user)
        if not change:
            client, secret = api_client_create(tenant=obj.tenant, name=obj.name,
                                               scopes=obj.scopes.split(), actor=actor,
                                               allowed_subs=obj.allowed_subs)
            obj.pk, obj.kid = client.pk, client.kid
            self.one_time_secret_keep(request, secret=secret, label="secret")
            return
        changed = set(form.changed_data)
        if "allowed_subs" in changed:
            api_client_allowed_subs_set(client=obj, allowed_subs=obj.allowed_subs, actor=actor)
        if "active" in changed and not obj.active:
            api_client_revoke(client=obj, actor=actor)
        if changed - {"allowed_subs", "active"} or ("active" in changed and obj.active):
            messages.error(request, "Only allowed subs and revocation can change a client; "
                                    "create a new one for the rest.")

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected clients")
    def revoke(self, request, queryset):
        for client in queryset:
            api_client_revoke(client=client, actor=user_actor(request.user))
