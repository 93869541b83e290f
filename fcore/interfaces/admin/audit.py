"""Admin of audit streams and events, registered here rather than in `audit` (which imports
nothing of FC) so that they are tenant-scoped like every other admin page."""

from django.contrib import admin

from audit.models import AuditEvent, AuditStream

from .readonly import ReadOnlyAdmin
from .tenancy import TenantScopedAdmin


@admin.register(AuditStream)
class AuditStreamAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("name", "tenant", "head_seq", "head_hash", "updated_at")
    list_filter = ("tenant",)
    search_fields = ("name",)


@admin.register(AuditEvent)
class AuditEventAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ("stream", "seq", "code", "actor", "at", "hash")
    list_filter = ("tenant", "code")
    search_fields = ("stream__name", "actor", "hash")
