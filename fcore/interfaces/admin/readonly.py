"""Evidence is visible in admin and never editable. The audit models' admin pages are
registered in `fcore.interfaces.admin.audit` (tenant-scoped, which needs FC's tenancy);
the read-only base they and other apps use is here."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Evidence is shown, never edited: no add, change or delete (other apps use it too)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
