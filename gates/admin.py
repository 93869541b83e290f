"""Admin registrations of the gates app. Policies have their own module (policy_admin);
gates and decisions are evidence: shown, never edited."""

from django.contrib import admin

from audit.admin import ReadOnlyAdmin

from . import policy_admin  # noqa: F401  (registers PolicyAdmin)
from .models import Gate, PolicyDecision


@admin.register(Gate)
class GateAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "status", "source", "required_approvals", "approver_group",
                    "requested_by", "expires_at")
    list_filter = ("tenant", "status", "source")


@admin.register(PolicyDecision)
class PolicyDecisionAdmin(ReadOnlyAdmin):
    list_display = ("step_run", "decision", "reason", "policy", "policy_version",
                    "evaluated_at")
    list_filter = ("tenant", "decision")
