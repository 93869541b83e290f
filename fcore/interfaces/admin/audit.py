"""Admin of audit streams and events, registered here rather than in `audit` (which imports
nothing of FC) so that they are tenant-scoped like every other admin page."""

from django.contrib import admin

from audit.models import AuditEvent, AuditStream, AuditVerification

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


@admin.register(AuditVerification)
class AuditVerificationAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    """Background verifications (`POST /workflows/audit/verify`) and what each found."""

    list_display = ("id", "tenant", "status", "requested_by", "requested_at", "finished_at")
    list_filter = ("tenant", "status")
