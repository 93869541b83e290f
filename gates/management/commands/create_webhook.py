"""python manage.py create_webhook --tenant SLUG --name NAME --url URL [--events …]."""

import json

from django.core.management.base import BaseCommand, CommandError

from fcore.errors import BadRequest
from fcore.models import Tenant
from gates.models import DEFAULT_EVENTS, NOTIFY_EVENTS
from gates.webhook_endpoints import webhook_endpoint_create


class Command(BaseCommand):
    help = ("Create a webhook endpoint for gate notifications and print "
            "{id, url, events, secret}; the signing secret is shown only now.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--url", required=True,
                            help="http(s) URL on a host in FCORE_WEBHOOK_ALLOWED_HOSTS")
        parser.add_argument("--events", default=" ".join(DEFAULT_EVENTS),
                            help=f"space-separated, from: {' '.join(NOTIFY_EVENTS)}")
        parser.add_argument("--actor", default="system:cli")

    def handle(self, *args, tenant, name, url, events, actor, **options):
        try:
            tenant_obj = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {tenant!r}") from None
        try:
            endpoint, secret = webhook_endpoint_create(tenant=tenant_obj, name=name, url=url,
                                                       events=events.split(), actor=actor)
        except BadRequest as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.context["errors"].items())
            raise CommandError(problems) from None
        self.stdout.write(json.dumps({"id": endpoint.id, "tenant": tenant, "url": endpoint.url,
                                      "events": endpoint.events, "secret": secret}))
