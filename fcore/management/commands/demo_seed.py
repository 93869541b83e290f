"""python manage.py demo_seed — the demo tenant, people, workflows, policies and a few runs.

Idempotent: people and bundles are set, not duplicated; demo runs are only created when
the tenant has none.
"""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from fcore.members import member_set
from runs.bundles import bundle_load
from runs.management.commands.load_workflows import read_bundle
from runs.models import Run
from runs.services import run_create

DEMO_PASSWORD = "fc-demo-pass"
PEOPLE = [
    ("olivia", ["operators"]),
    ("adam", ["approvers"]),
    ("amira", ["approvers"]),
    ("priya", ["policy-admins"]),
    ("otto", ["operators", "approvers"]),
]
BUNDLES = ("docs/examples/pt004.yaml", "docs/examples/demo.yaml")


class Command(BaseCommand):
    help = "Load the demo tenant (tenant_omega), people, bundles and a few runs."

    def handle(self, *args, **options):
        tenant = None
        for name in BUNDLES:
            path = Path(settings.BASE_DIR) / name
            summary = bundle_load(read_bundle(path), actor="system:demo", source=name)
            tenant = summary["tenant"]
        from fcore.models import Tenant

        tenant = Tenant.objects.get(slug=tenant)
        for username, groups in PEOPLE:
            member_set(tenant=tenant, username=username, groups=groups, password=DEMO_PASSWORD)
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.invalid", DEMO_PASSWORD)
        member_set(tenant=tenant, username="admin",
                   groups=["operators", "approvers", "policy-admins"])
        if not Run.objects.for_tenant(tenant).exists():
            for i, amount in enumerate((1200, 48000, 250), start=1):
                run_create(tenant=tenant, workflow="vendor_payment", actor="user:olivia",
                           input={"amount": amount, "vendor": f"vendor-{i}"})
            run_create(tenant=tenant, workflow="pt004_execution_spine", actor="user:olivia",
                       input={"amount": 25000})
            run_create(tenant=tenant, workflow="nightly_report", actor="user:olivia", input={})
        self.stdout.write(f"demo tenant {tenant.slug} ready")
