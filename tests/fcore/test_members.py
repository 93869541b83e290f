"""Memberships and their groups are administrative changes: every create, change and
removal — through the services, `add_member`, Django admin (one by one, the list's bulk
delete, or deleting a person or a group) — lands in the tenant's admin stream as
FC-ADM-005 in the change's transaction, with who did it, whose membership, and the groups
before and after."""

import io
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from audit.messages import event_message
from audit.models import AuditEvent
from audit.services import admin_stream_name
from audit.verify import audit_verify
from fcore import members
from fcore.members import member_set
from fcore.models import Membership

pytestmark = pytest.mark.django_db

ADMIN = "/admin/fcore/membership/"
CODE = "FC-ADM-005"


def adm_events(tenant) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug),
                                          code=CODE).order_by("seq"))


def groups_of(membership) -> list[str]:
    return sorted(g.name for g in Membership.objects.get(pk=membership.pk).groups.all())


def test_member_set_records_creation_and_changes_and_nothing_when_nothing_changed(pt004):
    membership = member_set(tenant=pt004, username="ann", groups=["approvers"],
                            actor="user:boss")
    member_set(tenant=pt004, username="ann", groups=["approvers"], actor="user:boss")
    member_set(tenant=pt004, username="ann", groups=["operators", "approvers"],
               actor="user:boss")
    created, changed = adm_events(pt004)
    assert created.actor == changed.actor == "user:boss"
    assert created.data == {"membership_id": membership.pk, "user": "ann",
                            "action": "created", "old_groups": [],
                            "new_groups": ["approvers"]}
    assert changed.data == {"membership_id": membership.pk, "user": "ann",
                            "action": "changed", "old_groups": ["approvers"],
                            "new_groups": ["approvers", "operators"]}
    assert event_message(CODE, changed.data) == "Membership of 'ann' changed"
    assert audit_verify(tenant_ids=[pt004.id]).ok


def test_member_groups_set_and_member_remove_record_old_and_new_groups(pt004):
    membership = member_set(tenant=pt004, username="ann", groups=["approvers"],
                            actor="user:boss")
    members.member_groups_set(membership=membership, groups=["auditors"], actor="user:olga")
    members.member_remove(membership=membership, actor="user:olga")
    assert not Membership.objects.filter(pk=membership.pk).exists()
    _, changed, removed = adm_events(pt004)
    assert (changed.data["old_groups"], changed.data["new_groups"]) == (["approvers"],
                                                                        ["auditors"])
    assert removed.actor == "user:olga"
    assert removed.data == {"membership_id": membership.pk, "user": "ann",
                            "action": "removed", "old_groups": ["auditors"],
                            "new_groups": []}


def test_a_failed_append_rolls_the_membership_change_back(pt004):
    membership = member_set(tenant=pt004, username="ann", groups=["approvers"],
                            actor="user:boss")
    with mock.patch.object(members, "audit_append", side_effect=RuntimeError("disk full")):
        with pytest.raises(RuntimeError):
            members.member_groups_set(membership=membership, groups=["operators"],
                                      actor="user:x")
        with pytest.raises(RuntimeError):
            member_set(tenant=pt004, username="bob", groups=["operators"], actor="user:x")
    assert groups_of(membership) == ["approvers"]
    assert not Membership.objects.filter(user__username="bob").exists()
    assert len(adm_events(pt004)) == 1


def test_add_member_is_audited_as_its_actor(pt004):
    call_command("add_member", "--tenant", pt004.slug, "--username", "cli-person",
                 "--groups", "operators", "--password", "pw-12345678", "--actor",
                 "user:ops", stdout=io.StringIO())
    event, = adm_events(pt004)
    assert event.actor == "user:ops" and event.data["user"] == "cli-person"
    assert event.data["new_groups"] == ["operators"]


# --- Django admin --------------------------------------------------------------------------

@pytest.fixture
def root(pt004) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client = Client()
    client.force_login(user)
    return client


def group_ids(*names) -> list[int]:
    return [Group.objects.get_or_create(name=name)[0].pk for name in names]


def test_admin_add_change_and_delete_are_audited_as_the_signed_in_person(pt004, root):
    person = get_user_model().objects.create_user("dora")
    response = root.post(f"{ADMIN}add/", {"tenant": pt004.pk, "user": person.pk,
                                          "groups": group_ids("approvers")})
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = Membership.objects.get(user=person)
    response = root.post(f"{ADMIN}{membership.pk}/change/",
                         {"groups": group_ids("approvers", "operators")})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert groups_of(membership) == ["approvers", "operators"]
    response = root.post(f"{ADMIN}{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    events = adm_events(pt004)
    assert [e.actor for e in events] == ["user:root"] * 3
    assert [(e.data["action"], e.data["old_groups"], e.data["new_groups"]) for e in events] \
        == [("created", [], ["approvers"]),
            ("changed", ["approvers"], ["approvers", "operators"]),
            ("removed", ["approvers", "operators"], [])]


def test_admin_bulk_delete_audits_every_membership(pt004, other_tenant, root):
    ours = member_set(tenant=pt004, username="ann", groups=["approvers"])
    theirs = member_set(tenant=other_tenant, username="ann", groups=["operators"])
    response = root.post(ADMIN, {"action": "delete_selected", "_selected_action":
                                 [ours.pk, theirs.pk], "post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(user__username="ann").exists()
    assert adm_events(pt004)[-1].data["action"] == "removed"
    assert adm_events(other_tenant)[-1].data["action"] == "removed"


def test_admin_cannot_move_a_membership_to_another_tenant_or_person(pt004, other_tenant,
                                                                     root):
    membership = member_set(tenant=pt004, username="ann", groups=["approvers"])
    other = get_user_model().objects.create_user("eve")
    root.post(f"{ADMIN}{membership.pk}/change/", {"tenant": other_tenant.pk,
                                                   "user": other.pk,
                                                   "groups": group_ids("approvers")})
    membership.refresh_from_db()
    assert (membership.tenant, membership.user.username) == (pt004, "ann")


def test_deleting_a_person_or_a_group_in_admin_is_audited(pt004, root):
    Group.objects.create(name="finance")
    ann = member_set(tenant=pt004, username="ann", groups=["approvers", "finance"])
    bob = member_set(tenant=pt004, username="bob", groups=["operators"])
    finance = Group.objects.get(name="finance")
    response = root.post(f"/admin/auth/group/{finance.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    response = root.post(f"/admin/auth/user/{bob.user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    *_, lost_group, removed = adm_events(pt004)
    assert lost_group.data == {"membership_id": ann.pk, "user": "ann", "action": "changed",
                               "old_groups": ["approvers", "finance"],
                               "new_groups": ["approvers"]}
    assert removed.data["action"] == "removed" and removed.data["user"] == "bob"
    assert lost_group.actor == removed.actor == "user:root"
