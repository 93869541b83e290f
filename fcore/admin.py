"""Admin for tenants, memberships and API clients. Creating a client shows its secret once;
revoking goes through the service so it is audited."""

from django.contrib import admin, messages
from django.db import models

from .actors import user_actor
from .clients import api_client_create, api_client_revoke
from .jsonlimits import CheckedJSONField
from .models import ApiClient, Membership, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    formfield_overrides = {models.JSONField: {"form_class": CheckedJSONField}}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "group_names")
    list_filter = ("tenant", "groups")
    filter_horizontal = ("groups",)

    @admin.display(description="groups")
    def group_names(self, obj):
        return ", ".join(g.name for g in obj.groups.all())


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "kid", "scopes", "active", "created_by", "created_at")
    list_filter = ("tenant", "active")
    readonly_fields = ("kid", "secret_salt", "created_by", "created_at", "revoked_at")
    fields = ("tenant", "name", "scopes", "active") + readonly_fields
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        actor = user_actor(request.user)
        if not change:
            client, secret = api_client_create(tenant=obj.tenant, name=obj.name,
                                               scopes=obj.scopes.split(), actor=actor)
            obj.pk, obj.kid = client.pk, client.kid
            messages.warning(request, f"Client {client.kid} created. Its secret, shown only "
                                      f"now: {secret}")
        elif "active" in form.changed_data and not obj.active:
            api_client_revoke(client=obj, actor=actor)
        else:
            messages.error(request, "Only revocation can change a client; create a new one.")

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected clients")
    def revoke(self, request, queryset):
        for client in queryset:
            api_client_revoke(client=client, actor=user_actor(request.user))
