"""Admin registrations of the gates app, every one tenant-scoped (`fcore.interfaces.admin.tenancy`).
Policies have their own module (policy_admin); gates and decisions are evidence: shown,
never edited. Webhook endpoints are configured here; their deliveries and the gate emails
are a read-only log."""

from django import forms
from django.contrib import admin, messages

from fcore.actors import user_actor
from fcore.jsonlimits import CheckedJSONField
from gates.models import EmailNotification, Gate, PolicyDecision, WebhookDelivery, WebhookEndpoint
from gates.webhook_endpoints import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
    webhook_events_problem,
    webhook_url_problem,
)

from .readonly import ReadOnlyAdmin
from .secrets import OneTimeSecretAdmin
from .services import ServiceDeleteAdmin
from .tenancy import TenantScopedAdmin


@admin.register(Gate)
class GateAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("id", "run", "status", "source", "required_approvals", "approver_group",
                    "requested_by", "expires_at")
    list_filter = ("tenant", "status", "source")


@admin.register(PolicyDecision)
class PolicyDecisionAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("step_run", "decision", "reason", "policy", "policy_version",
                    "evaluated_at")
    list_filter = ("tenant", "decision")


# --- notifications -------------------------------------------------------------------------

class WebhookEndpointForm(forms.ModelForm):
    """The URL must be http(s) on an allowed host; events from the known list."""

    url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ("tenant", "name", "url", "events", "active")
        field_classes = {"events": CheckedJSONField}

    def clean_url(self):
        url = self.cleaned_data.get("url", "")
        problem = webhook_url_problem(url)
        if problem:
            raise forms.ValidationError(f"Use {problem}." if problem.startswith("an ")
                                        else problem)
        return url

    def clean_events(self):
        events = self.cleaned_data.get("events")
        problem = webhook_events_problem(events)
        if problem:
            raise forms.ValidationError(f"Use {problem}.")
        return events


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantScopedAdmin, OneTimeSecretAdmin, ServiceDeleteAdmin,
                           admin.ModelAdmin):
    """Creating an endpoint shows its signing secret once, on the response page (never in a
    message); it is never displayed again.
    Every save and delete, one by one or from the list, goes through the services in
    `gates.webhook_endpoints`, so it is audited (`FC-ADM-004`) in the change's transaction."""

    form = WebhookEndpointForm
    list_display = ("name", "tenant", "url", "events", "active", "created_by", "created_at")
    list_filter = ("tenant", "active")
    readonly_fields = ("created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        # an endpoint never moves to another tenant (its secret and log stay where they were)
        return ("tenant", *self.readonly_fields) if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        data, actor = form.cleaned_data, user_actor(request.user)
        if change:
            _, changed = webhook_endpoint_update(
                endpoint=obj, name=data["name"], url=data["url"], events=data["events"],
                active=data["active"], actor=actor)
            obj.refresh_from_db()
            if not changed:
                messages.info(request, "Nothing changed: nothing recorded.")
            return
        endpoint, secret = webhook_endpoint_create(
            tenant=data["tenant"], name=data["name"], url=data["url"], events=data["events"],
            active=data["active"], actor=actor)
        obj.pk = endpoint.pk
        obj.refresh_from_db()
        self.one_time_secret_keep(request, secret=secret, label="signing secret")

    def delete_with(self, obj, actor):
        webhook_endpoint_delete(endpoint=obj, actor=actor)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    """The delivery log: every notification, its attempts and their outcome."""

    tenant_path = "endpoint__tenant"
    list_display = ("created_at", "event", "endpoint", "gate", "status", "attempts",
                    "last_status_code", "last_error", "next_attempt_at", "delivered_at")
    list_filter = ("status", "event", "endpoint__tenant", "endpoint")
    search_fields = ("delivery_id", "endpoint__name", "endpoint__url")
    readonly_fields = ("delivery_id", "endpoint", "gate", "event", "payload", "status",
                       "attempts", "last_status_code", "last_error", "attempt_log",
                       "next_attempt_at", "delivered_at", "created_at")


@admin.register(EmailNotification)
class EmailNotificationAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("created_at", "event", "gate", "email", "status", "attempts", "sent_at",
                    "last_error")
    list_filter = ("status", "event", "tenant")
    search_fields = ("email",)
