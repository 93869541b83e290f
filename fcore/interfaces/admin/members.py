"""Admin of memberships, people and groups: every change to a membership or its groups goes
through `fcore.members`, so it is audited (`FC-ADM-005`) in the change's transaction —
also when deleting a person (their memberships end) or a group (it leaves every
membership). A membership never moves to another tenant or person: those fields are
read-only once it exists."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from fcore.actors import user_actor
from fcore.members import (
    member_create,
    member_group_delete,
    member_groups_set,
    member_remove,
    member_user_delete,
)
from fcore.models import Membership
from fcore.oidc import is_provider_user

from .services import ServiceDeleteAdmin
from .tenancy import TenantScopedAdmin


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin, ServiceDeleteAdmin, admin.ModelAdmin):
    list_display = ("user", "tenant", "group_names")
    list_filter = ("tenant", "groups")
    filter_horizontal = ("groups",)

    @admin.display(description="groups")
    def group_names(self, obj):
        return ", ".join(g.name for g in obj.groups.all())

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", "user") if obj else ()

    def save_model(self, request, obj, form, change):
        groups, actor = form.cleaned_data["groups"], user_actor(request.user)
        if change:
            member_groups_set(membership=obj, groups=groups, actor=actor)
        else:
            obj.pk = member_create(tenant=obj.tenant, user=obj.user, groups=groups,
                                   actor=actor).pk

    def save_related(self, request, form, formsets, change):
        """Nothing: the groups were set, audited, by `save_model` (the form's own m2m save
        would set them again past the service)."""

    def delete_with(self, obj, actor):
        member_remove(membership=obj, actor=actor)


admin.site.unregister(get_user_model())
admin.site.unregister(Group)


@admin.register(get_user_model())
class PersonAdmin(ServiceDeleteAdmin, UserAdmin):
    """Django's user admin; deleting a person ends their memberships, audited. A person
    from the OIDC provider keeps the username the provider's subject gives them."""

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields + ("username",) if obj is not None and is_provider_user(obj) else fields

    def delete_with(self, obj, actor):
        member_user_delete(user=obj, actor=actor)


@admin.register(Group)
class TenantGroupAdmin(ServiceDeleteAdmin, GroupAdmin):
    """Django's group admin; deleting a group takes it out of memberships, audited."""

    def delete_with(self, obj, actor):
        member_group_delete(group=obj, actor=actor)
