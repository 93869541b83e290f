"""python manage.py export_bundle --tenant SLUG [--output FILE] — policy as code, out."""

import json

import yaml
from django.core.management.base import BaseCommand, CommandError

from fcore.models import Tenant
from runs.bundles import bundle_export


class Command(BaseCommand):
    help = "Write the tenant's workflows and policies as a bundle load_workflows reads back."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--output", help="a file (.json for JSON); stdout by default")
        parser.add_argument("--format", choices=["yaml", "json"])

    def handle(self, *args, tenant, output=None, format=None, **options):
        try:
            tenant_obj = Tenant.objects.get(slug=tenant)
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {tenant!r}") from None
        bundle = bundle_export(tenant_obj)
        as_json = format == "json" or (format is None and output and output.endswith(".json"))
        text = (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n" if as_json
                else yaml.safe_dump(bundle, sort_keys=False, allow_unicode=True, width=100))
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")
