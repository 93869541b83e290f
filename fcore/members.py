"""Tenant memberships and their groups: the only services that create, change or remove them.

Every change is an administrative change: it lands in the tenant's admin stream
(`tenant/<slug>/admin`) as `FC-ADM-005` in the transaction that makes it, so the change and
its event commit or roll back together. The event's actor is who made the change; its data
names the membership, the person (`user`, their username), the `action` (`created`,
`changed`, `removed`) and the groups before and after (`old_groups`, `new_groups`, sorted
names). A call that changes nothing records nothing. Lock order: the membership row, then
the stream head.

Django admin (memberships, and deleting a person or a group, which ends or changes their
memberships), `add_member` and the demo data all come through here.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from audit.codes import Code
from audit.services import admin_stream_name, audit_append

from .models import Membership, Tenant
from .tenancy import GROUP_SCOPES

AUDIT_CODE = Code.MEMBERSHIP_CHANGED
BOOTSTRAP_ACTOR = "system:cli"


def _group_names(groups) -> list[str]:
    return sorted({g if isinstance(g, str) else g.name for g in groups})


def _record(*, membership: Membership, action: str, old: list[str], new: list[str],
            actor: str) -> None:
    tenant = membership.tenant
    audit_append(tenant_id=tenant.id, stream=admin_stream_name(tenant.slug), code=AUDIT_CODE,
                 actor=actor, data={"membership_id": membership.pk,
                                    "user": membership.user.get_username(),
                                    "action": action, "old_groups": old, "new_groups": new})


def _groups_named(names: list[str]):
    """The groups of these names, FC's own created when missing; ValueError for others."""
    known = set(GROUP_SCOPES) | set(Group.objects.values_list("name", flat=True))
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown group(s) {', '.join(unknown)}")
    for name in names:  # FC's own groups exist even in a freshly emptied database
        Group.objects.get_or_create(name=name)
    return Group.objects.filter(name__in=names)


def member_create(*, tenant: Tenant, user, groups, actor: str) -> Membership:
    """Make `user` a member of `tenant` with `groups` (Group objects or names).
    `FC-ADM-005` created."""
    with transaction.atomic():
        chosen = _groups_named(_group_names(groups))
        membership = Membership.objects.create(tenant=tenant, user=user)
        membership.groups.set(chosen)
        _record(membership=membership, action="created", old=[],
                new=_group_names(chosen), actor=actor)
    return membership


def member_groups_set(*, membership: Membership, groups, actor: str) -> bool:
    """Give the membership exactly `groups` (Group objects or names); `FC-ADM-005` changed
    with the groups before and after, nothing when they are the same. True when changed."""
    with transaction.atomic():
        current = (Membership.objects.select_for_update().select_related("tenant", "user")
                   .get(pk=membership.pk))
        old = _group_names(current.groups.all())
        chosen = _groups_named(_group_names(groups))
        new = _group_names(chosen)
        if new == old:
            return False
        current.groups.set(chosen)
        _record(membership=current, action="changed", old=old, new=new, actor=actor)
    return True


def member_remove(*, membership: Membership, actor: str) -> bool:
    """End a membership (`FC-ADM-005` removed, with the groups it had). False when it was
    already gone."""
    with transaction.atomic():
        current = (Membership.objects.select_for_update().select_related("tenant", "user")
                   .filter(pk=membership.pk).first())
        if current is None:
            return False
        old, membership_id = _group_names(current.groups.all()), current.pk
        current.delete()
        current.pk = membership_id  # delete() clears it; the event names the membership
        _record(membership=current, action="removed", old=old, new=[], actor=actor)
    return True


def member_user_delete(*, user, actor: str) -> None:
    """Delete a person, ending each of their memberships through `member_remove` first."""
    with transaction.atomic():
        for membership in Membership.objects.filter(user=user):
            member_remove(membership=membership, actor=actor)
        user.delete()


def member_group_delete(*, group: Group, actor: str) -> None:
    """Delete a group, taking it out of every membership through `member_groups_set` first."""
    with transaction.atomic():
        for membership in Membership.objects.filter(groups=group):
            member_groups_set(membership=membership, actor=actor,
                              groups=[g for g in membership.groups.all() if g.pk != group.pk])
        group.delete()


def member_set(*, tenant: Tenant, username: str, groups: list[str],
               password: str | None = None, email: str = "",
               actor: str = BOOTSTRAP_ACTOR) -> Membership:
    """Create the person if needed, and set their membership and groups in `tenant`
    (bootstrapping and scripts). `FC-ADM-005` when the membership is created or changed."""
    User = get_user_model()
    with transaction.atomic():
        _groups_named(groups)  # refuse unknown groups before anything is written
        user, created = User.objects.get_or_create(username=username,
                                                   defaults={"email": email})
        if password:
            user.set_password(password)
            user.save()
        elif created:
            user.set_unusable_password()
            user.save()
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None:
            return member_create(tenant=tenant, user=user, groups=groups, actor=actor)
        member_groups_set(membership=membership, groups=groups, actor=actor)
    return membership
