"""Tenant membership service (bootstrapping and scripts; admins use Django admin)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from .models import Membership, Tenant
from .tenancy import GROUP_SCOPES


def member_set(*, tenant: Tenant, username: str, groups: list[str],
               password: str | None = None, email: str = "") -> Membership:
    """Create the person if needed, and set their membership and groups in `tenant`."""
    known = set(GROUP_SCOPES) | set(Group.objects.values_list("name", flat=True))
    unknown = sorted(set(groups) - known)
    if unknown:
        raise ValueError(f"unknown group(s) {', '.join(unknown)}")
    User = get_user_model()
    with transaction.atomic():
        for name in groups:  # FC's own groups exist even in a freshly emptied database
            Group.objects.get_or_create(name=name)
        user, created = User.objects.get_or_create(username=username,
                                                   defaults={"email": email})
        if password:
            user.set_password(password)
            user.save()
        elif created:
            user.set_unusable_password()
            user.save()
        membership, _ = Membership.objects.get_or_create(tenant=tenant, user=user)
        membership.groups.set(Group.objects.filter(name__in=groups))
    return membership
