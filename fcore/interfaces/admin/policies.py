"""Policies in admin: rules validated on save (the message names the rule and the position
of the fault), every save a new immutable version through `policy_save`. Only superusers
and people who hold `policy-admins` in a policy's tenant may change, restore or simulate
it; like every admin page it is tenant-scoped (`fcore.interfaces.admin.tenancy`): a
person who is not a superuser sees the policies of the tenants they are a member of, and may add
policies only to those where they are a policy admin.

Pages of this admin besides the standard ones:
- `<id>/versions/`: every version, two of them side by side with their diff, and a POST
  button per older version that restores it (`policy_restore`: it becomes a new version);
- "Simulate" on the add and change forms: the edited fields are validated exactly like a
  save and run against the tenant's last N recorded decisions (`policy_simulate`). The form
  is then shown again, still unsaved, with the report; nothing is written, not even an
  admin log entry.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from fcore.actors import user_actor
from fcore.jsonlimits import CheckedJSONField
from fcore.tenancy import tenants_of
from gates.models import Policy, PolicyVersion
from gates.policies import (
    DEFAULT_LIMIT,
    RuleError,
    policy_restore,
    policy_save,
    policy_simulate,
    policy_versions,
    spec_changes,
    spec_diff_table,
    validate_applies_to,
    validate_rules,
    version_rows,
)

from .tenancy import TenantScopedAdmin

SIMULATE = "_simulate"
SIMULATE_LIMIT = "_simulate_limit"
MAX_SIMULATE_LIMIT = 10_000
MAX_TIER = 100  # what policy_save accepts


POLICY_ADMINS = "policy-admins"


def _policy_admin_tenants(request):
    """The tenants where this person may change policies (None: every tenant)."""
    return None if request.user.is_superuser else tenants_of(request.user, group=POLICY_ADMINS)


def _is_policy_admin(request, tenant=None) -> bool:
    """Whether this person may change the policies of `tenant` (None: of any tenant)."""
    tenants = _policy_admin_tenants(request)
    if tenants is None:
        return True
    return (tenants.filter(pk=tenant.pk) if tenant is not None else tenants).exists()


class PrettyJSONField(CheckedJSONField):
    """A JSON field shown indented, so a rule is one block of lines in the text area."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class PolicyForm(forms.ModelForm):
    # set on the class `PolicyAdmin.get_form` builds for a "Simulate" submit: such a form is
    # validated like any other but never reports itself valid, so the admin shows it again
    # instead of saving it
    simulate_only = False
    simulation_ready = False

    class Meta:
        model = Policy
        fields = ("tenant", "name", "description", "tier", "applies_to", "rules", "enabled")
        field_classes = {"applies_to": PrettyJSONField, "rules": PrettyJSONField}
        widgets = {"rules": forms.Textarea(attrs={"rows": 16, "cols": 100,
                                                  "class": "vLargeTextField"}),
                   "applies_to": forms.Textarea(attrs={"rows": 5, "cols": 60})}

    def clean_tier(self):
        tier = self.cleaned_data.get("tier")
        if tier is not None and not 0 <= tier <= MAX_TIER:
            raise forms.ValidationError(f"tier must be an integer from 0 to {MAX_TIER}")
        return tier

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

    def is_valid(self):
        valid = super().is_valid()
        if self.simulate_only:
            self.simulation_ready = valid
            return False
        return valid


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


def _simulate_limit(request) -> tuple[int | None, str]:
    """N from the simulate form: (N, "") or (None, what is wrong)."""
    raw = (request.POST.get(SIMULATE_LIMIT) or "").strip() or str(DEFAULT_LIMIT)
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_SIMULATE_LIMIT:
        return None, f"N must be a whole number from 1 to {MAX_SIMULATE_LIMIT}."
    return limit, ""


@admin.register(Policy)
class PolicyAdmin(TenantScopedAdmin, admin.ModelAdmin):
    form = PolicyForm
    change_form_template = "admin/gates/policy/change_form.html"
    versions_template = "admin/gates/policy/versions.html"
    list_display = ("name", "tenant", "tier", "version", "enabled", "updated_at")
    list_filter = ("tenant", "enabled", "tier")
    inlines = [PolicyVersionInline]

    # --- who sees and changes what -------------------------------------------------------

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tenant")

    def form_tenants(self, request):
        return _policy_admin_tenants(request)

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", "name") if obj else ()

    def has_change_permission(self, request, obj=None):
        return _is_policy_admin(request, obj.tenant if obj else None)

    def has_add_permission(self, request):
        return _is_policy_admin(request)

    def has_delete_permission(self, request, obj=None):
        return False  # disable a policy instead: its versions are evidence

    # --- saving and simulating -----------------------------------------------------------

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if request.method == "POST" and SIMULATE in request.POST:
            form = type(form.__name__, (form,), {"simulate_only": True})
        return form

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

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        form = context["adminform"].form
        context["can_simulate"] = _is_policy_admin(request, obj.tenant if obj else None)
        context["simulate_limit"] = request.POST.get(SIMULATE_LIMIT) or DEFAULT_LIMIT
        if form.simulate_only:
            context["simulation"] = self._simulation(request, form, obj)
        return super().render_change_form(request, context, add=add, change=change,
                                          form_url=form_url, obj=obj)

    def _simulation(self, request, form, obj) -> dict:
        """The report of a "Simulate" submit, or why there is none. Writes nothing."""
        if not _is_policy_admin(request, obj.tenant if obj else None):
            raise PermissionDenied
        limit, problem = _simulate_limit(request)
        if not form.simulation_ready:
            return {"limit": limit, "error": "Correct the errors below to simulate."}
        if problem:
            return {"limit": None, "error": problem}
        data = form.cleaned_data
        tenant = obj.tenant if obj else data["tenant"]  # a form choice: a policy admin's
        draft = {"name": obj.name if obj else data["name"], "tier": data["tier"],
                 "applies_to": data["applies_to"], "rules": data["rules"],
                 "enabled": data["enabled"]}
        report = policy_simulate(tenant=tenant, drafts=[draft], limit=limit)
        return {"limit": limit, "tenant": tenant, "draft": draft, "report": report.as_dict()}

    # --- versions and restore ------------------------------------------------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/versions/", wrap(self.versions_view),
                 name=f"{prefix}_versions"),
            path("<path:object_id>/versions/<int:version>/restore/", wrap(self.restore_view),
                 name=f"{prefix}_restore"),
            *super().get_urls(),
        ]

    def _policy_for(self, request, object_id) -> Policy:
        policy = self.get_object(request, unquote(object_id))  # tenant-scoped
        if policy is None:
            raise Http404("No such policy.")
        if not _is_policy_admin(request, policy.tenant):
            raise PermissionDenied
        return policy

    def versions_view(self, request, object_id):
        """Every version of a policy; two of them (default: the last two) side by side."""
        policy = self._policy_for(request, object_id)
        versions = policy_versions(policy)
        by_number = {v.version: v for v in versions}
        old = new = None
        if versions:
            new = by_number.get(_int(request.GET.get("b")), versions[0])
            default_old = versions[1] if len(versions) > 1 else versions[0]
            old = by_number.get(_int(request.GET.get("a")), default_old)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "original": policy, "title": f"Versions of {policy.name}",
            "subtitle": None, "versions": versions, "rows": version_rows(versions),
            "old": old, "new": new,
            "changes": spec_changes(old, new) if old and new else None,
            "diff_table": spec_diff_table(old, new) if old and new else "",
            "has_view_permission": True,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.versions_template, context)

    def restore_view(self, request, object_id, version):
        """POST: make an old version current again, as a new version; then the history."""
        policy = self._policy_for(request, object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        current = policy.version
        try:
            restored, changed = policy_restore(policy=policy, version=version,
                                               actor=user_actor(request.user))
        except RuleError as exc:
            messages.error(request, f"Version {version} cannot be restored: {exc}")
        else:
            if changed:
                self.log_change(request, restored,
                                f"Restored version {version} as version {restored.version}.")
                messages.success(request, f"Version {version} restored: it is now version "
                                          f"{restored.version}.")
            else:
                messages.info(request, f"Version {version} is the same as the current "
                                       f"version {current}: nothing changed.")
        return redirect(reverse(f"{self.admin_site.name}:{self.opts.app_label}_"
                                f"{self.opts.model_name}_versions", args=[policy.pk]))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
