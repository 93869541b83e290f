"""Admin for tenants, memberships and API clients. Creating a client shows its secret once;
revoking goes through the service so it is audited."""

from django import forms
from django.contrib import admin, messages

from .actors import user_actor
from .clients import (
    allowed_subs_clean,
    api_client_allowed_subs_set,
    api_client_create,
    api_client_revoke,
)
from .models import ApiClient, Membership, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "group_names")
    list_filter = ("tenant", "groups")
    filter_horizontal = ("groups",)

    @admin.display(description="groups")
    def group_names(self, obj):
        return ", ".join(g.name for g in obj.groups.all())


class ApiClientForm(forms.ModelForm):
    def clean_allowed_subs(self):
        try:
            return allowed_subs_clean(self.cleaned_data["allowed_subs"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
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
            messages.warning(request, f"Client {client.kid} created. Its secret, shown only "
                                      f"now: {secret}")
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
