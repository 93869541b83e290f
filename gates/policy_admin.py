"""Policies in admin: rules validated on save (the message names the rule and the position
of the fault), every save a new immutable version through `policy_save`. Only superusers
and members of `policy-admins` may change policies."""

from django import forms
from django.contrib import admin, messages

from fcore.actors import user_actor
from fcore.tenancy import principal_for_user

from .models import Policy, PolicyVersion
from .policies import policy_save
from .policy import RuleError, validate_applies_to, validate_rules


def _is_policy_admin(request) -> bool:
    if request.user.is_superuser:
        return True
    principal = principal_for_user(request.user)
    return bool(principal and "policy-admins" in principal.groups)


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = ("tenant", "name", "description", "tier", "applies_to", "rules", "enabled")

    def clean_rules(self):
        try:
            return validate_rules(self.cleaned_data.get("rules"))
        except RuleError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_applies_to(self):
        try:
            return validate_applies_to(self.cleaned_data.get("applies_to"))
        except RuleError as exc:
            raise forms.ValidationError(str(exc)) from None


class PolicyVersionInline(admin.TabularInline):
    model = PolicyVersion
    fields = ("version", "tier", "enabled", "rules", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ("name", "tenant", "tier", "version", "enabled", "updated_at")
    list_filter = ("tenant", "enabled", "tier")
    inlines = [PolicyVersionInline]

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", "name") if obj else ()

    def has_change_permission(self, request, obj=None):
        return _is_policy_admin(request)

    def has_add_permission(self, request):
        return _is_policy_admin(request)

    def has_delete_permission(self, request, obj=None):
        return False  # disable a policy instead: its versions are evidence

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        policy, changed = policy_save(
            tenant=obj.tenant, name=obj.name, rules=data["rules"], tier=data["tier"],
            applies_to=data["applies_to"], enabled=data["enabled"],
            description=data.get("description", ""), actor=user_actor(request.user))
        obj.pk = policy.pk
        obj.refresh_from_db()
        if not changed:
            messages.info(request, "Nothing changed: no new version.")
