"""python manage.py add_member --tenant SLUG --username NAME --groups approvers,operators."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from fcore.members import member_set
from fcore.models import Tenant


class Command(BaseCommand):
    help = "Create a person if needed and set their tenant membership and groups."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--username", required=True)
        parser.add_argument("--groups", default="", help="comma-separated group names")
        parser.add_argument("--password", help="prompted when omitted and the user is new")
        parser.add_argument("--email", default="")
        parser.add_argument("--actor", default="system:cli", help="who is recorded as "
                            "making the change (FC-ADM-005)")

    def handle(self, *args, tenant, username, groups, password, email, actor, **options):
        try:
            tenant_obj = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {tenant!r}") from None
        from django.contrib.auth import get_user_model

        if password is None and not get_user_model().objects.filter(username=username).exists():
            password = getpass.getpass(f"Password for {username}: ")
        try:
            membership = member_set(tenant=tenant_obj, username=username, email=email,
                                    groups=[g for g in groups.split(",") if g],
                                    password=password, actor=actor)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        names = ", ".join(sorted(g.name for g in membership.groups.all())) or "no groups"
        self.stdout.write(f"{username} is a member of {tenant} ({names})")
