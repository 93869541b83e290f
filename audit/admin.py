"""Audit streams and events are visible in admin and never editable."""

from django.contrib import admin

from .models import AuditEvent, AuditStream


class ReadOnlyAdmin(admin.ModelAdmin):
    """Evidence is shown, never edited: no add, change or delete (other apps use it too)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditStream)
class AuditStreamAdmin(ReadOnlyAdmin):
    list_display = ("name", "tenant", "head_seq", "head_hash", "updated_at")
    list_filter = ("tenant",)
    search_fields = ("name",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("stream", "seq", "code", "actor", "at", "hash")
    list_filter = ("tenant", "code")
    search_fields = ("stream__name", "actor", "hash")
