"""python manage.py audit_checkpoint [--tenant SLUG] — seal checkpoints now."""

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import checkpoint_seal


class Command(BaseCommand):
    help = "Seal a signed checkpoint for every tenant (or one) whose streams changed."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="only this tenant (slug)")

    def handle(self, *args, tenant=None, **options):
        tenants = apps.get_model("fcore", "Tenant").objects.order_by("slug")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"no tenant {tenant!r}")
        for item in tenants:
            checkpoint = checkpoint_seal(tenant=item)
            if checkpoint is None:
                self.stdout.write(f"{item.slug}: nothing changed")
            else:
                self.stdout.write(f"{item.slug}: checkpoint {checkpoint.seq} over "
                                  f"{checkpoint.tree_size} stream(s), root {checkpoint.root}")
