"""Schedules in Django admin: listed with their next slot and last run, read-only (a
bundle defines them), paused and resumed by an action that goes through
`runs.schedules.schedule_set_paused`, so each is audited (`FC-ADM-006`)."""

from django.contrib import admin, messages

from fcore.actors import user_actor
from runs.models import Schedule
from runs.schedules import schedule_set_paused

from .tenancy import TenantScopedAdmin


@admin.register(Schedule)
class ScheduleAdmin(TenantScopedAdmin, admin.ModelAdmin):
    list_display = ("name", "tenant", "workflow", "cron", "timezone", "enabled", "paused",
                    "next_slot", "last_slot", "last_run")
    list_filter = ("tenant", "enabled", "paused")
    list_select_related = ("tenant", "last_run")
    search_fields = ("name", "workflow")
    actions = ["pause_schedules", "resume_schedules"]
    readonly_fields = ("tenant", "name", "workflow", "cron", "timezone", "input", "enabled",
                       "paused", "spec_hash", "last_slot", "next_slot", "last_run",
                       "created_by", "created_at", "updated_at")
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # the change permission allows the pause and resume actions; no field is editable
        return obj is None and super().has_change_permission(request)

    def _set_paused(self, request, queryset, *, paused: bool) -> None:
        actor = user_actor(request.user)
        for schedule in queryset.select_related("tenant"):
            schedule_set_paused(tenant=schedule.tenant, name=schedule.name, paused=paused,
                                actor=actor)
        self.message_user(request, f"{queryset.count()} schedule(s) "
                          f"{'paused' if paused else 'resumed'}.", messages.SUCCESS)

    @admin.action(description="Pause the selected schedules", permissions=["change"])
    def pause_schedules(self, request, queryset):
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume_schedules(self, request, queryset):
        self._set_paused(request, queryset, paused=False)
