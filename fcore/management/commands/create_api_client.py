"""python manage.py create_api_client --tenant SLUG --name NAME --scopes "runs:read …"
[--allowed-subs a,b]."""

import json

from django.core.management.base import BaseCommand, CommandError

from fcore.clients import api_client_create
from fcore.models import Tenant


class Command(BaseCommand):
    help = "Create an API client and print {kid, secret, tenant, scopes}; the secret is shown once."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help="space-separated scopes")
        parser.add_argument("--allowed-subs", default="",
                            help="comma-separated subs its tokens may name (default: any)")
        parser.add_argument("--actor", default="system:cli")

    def handle(self, *args, tenant, name, scopes, allowed_subs, actor, **options):
        try:
            tenant_obj = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {tenant!r}") from None
        try:
            client, secret = api_client_create(
                tenant=tenant_obj, name=name, scopes=scopes.split(), actor=actor,
                allowed_subs=[sub.strip() for sub in allowed_subs.split(",") if sub.strip()])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"kid": client.kid, "secret": secret, "tenant": tenant,
                                      "scopes": client.scopes}))
