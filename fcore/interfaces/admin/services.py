"""Deleting through a service in Django admin.

Admin deletes one object with `delete_model` and a list selection with `delete_queryset`
(one SQL DELETE, past every service). An admin whose deletes must be audited names its
service in `delete_with(obj, actor)`; both paths then call it, the list's all or none.
"""

from django.db import transaction

from fcore.actors import user_actor


class ServiceDeleteAdmin:
    """ModelAdmin mixin: every delete, one by one or from the list, through `delete_with`."""

    def delete_with(self, obj, actor: str) -> None:
        """Delete `obj` as `actor` through the model's service (each admin says which)."""
        raise NotImplementedError(f"{type(self).__name__} must name its delete service")

    def delete_model(self, request, obj):
        self.delete_with(obj, user_actor(request.user))

    def delete_queryset(self, request, queryset):
        actor = user_actor(request.user)
        with transaction.atomic():
            for obj in queryset:
                self.delete_with(obj, actor)
