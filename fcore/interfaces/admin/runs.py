"""Read-only admin views of definitions and runs: definitions are published as versions by
the bundle loader, runs change only through the services."""

from django.contrib import admin

from runs.models import Run, StepRun, WorkflowDefinition

from .readonly import ReadOnlyAdmin
from .tenancy import TenantScopedAdmin


@admin.register(WorkflowDefinition)
class WorkflowDefinitionAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("name", "version", "tenant", "created_by", "created_at")
    list_filter = ("tenant", "name")


class StepRunInline(admin.TabularInline):
    model = StepRun
    fields = ("step_id", "step_type", "status", "attempt", "decision", "started_at",
              "ended_at", "receipt_hash")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("run_id", "definition", "tenant", "status", "current_step", "created_by",
                    "created_at")
    list_filter = ("tenant", "status")
    search_fields = ("run_id", "created_by", "idempotency_key")
    inlines = [StepRunInline]
