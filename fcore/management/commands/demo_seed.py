"""python manage.py demo_seed — the demo tenant, people, workflows, policies and a few runs.

Idempotent: people and bundles are set, not duplicated; demo runs are only created when
the tenant has none. Demo people have addresses under example.invalid, so gate emails show
up in the worker's output (the console email backend); `admin` (a superuser) and `otto`
may override gates (break-glass), `admin` and `priya` may mark overrides reviewed.
"""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

from fcore.members import member_set
from runs.bundles import bundle_load
from runs.management.commands.load_workflows import read_bundle
from runs.models import Run
from runs.services import run_create, step_report

DEMO_PASSWORD = "fc-demo-pass"
PEOPLE = [
    ("olivia", ["operators"]),
    ("adam", ["approvers"]),
    ("amira", ["approvers"]),
    ("priya", ["policy-admins"]),
    ("otto", ["operators", "approvers"]),
]
BUNDLES = ("docs/examples/pt004.yaml", "docs/examples/demo.yaml",
           "docs/examples/agent_payment.yaml")
# the agent's plan of the worked example's run (docs/workflows.md)
AGENT_PLAN = {"amount": 25000, "payee": "ACME-4411",
              "recipients": ["finance@example.invalid", "olivia@example.invalid"]}
# a plan under the review threshold: paid at once, then archived by a child run
SMALL_PLAN = {"amount": 900, "payee": "ACME-4411", "recipients": ["finance@example.invalid"]}
# admin is a superuser: it holds every permission
PERMISSIONS = {"override_gate": ("otto",), "review_override": ("priya",)}


class Command(BaseCommand):
    help = "Load the demo tenant (tenant_omega), people, bundles and a few runs."

    def handle(self, *args, **options):
        tenant = None
        for name in BUNDLES:
            path = Path(settings.FCORE_EXAMPLES_DIR) / Path(name).name  # installed too
            summary = bundle_load(read_bundle(path), actor="system:demo", source=name)
            tenant = summary["tenant"]
        from fcore.models import Tenant

        tenant = Tenant.objects.get(slug=tenant)
        User = get_user_model()
        for username, groups in PEOPLE:
            email = f"{username}@example.invalid"
            member_set(tenant=tenant, username=username, groups=groups, password=DEMO_PASSWORD,
                       email=email, actor="system:demo")
            User.objects.filter(username=username, email="").update(email=email)
        for codename, usernames in PERMISSIONS.items():
            permission = Permission.objects.get(codename=codename,
                                                content_type__app_label="gates")
            for user in User.objects.filter(username__in=usernames):
                user.user_permissions.add(permission)
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.invalid", DEMO_PASSWORD)
        member_set(tenant=tenant, username="admin",
                   groups=["operators", "approvers", "policy-admins"], actor="system:demo")
        if not Run.objects.for_tenant(tenant).exists():
            for i, amount in enumerate((1200, 48000, 250), start=1):
                run_create(tenant=tenant, workflow="vendor_payment", actor="user:olivia",
                           input={"amount": amount, "vendor": f"vendor-{i}"})
            run_create(tenant=tenant, workflow="pt004_execution_spine", actor="user:olivia",
                       input={"amount": 25000})
            run_create(tenant=tenant, workflow="nightly_report", actor="user:olivia", input={})
            agent, _ = run_create(tenant=tenant, workflow="agent_payment",
                                  actor="user:olivia", input={"request": "pay ACME"})
            step_report(tenant=tenant, run_id=agent.run_id, step_id="plan",
                        actor="client:agent", status="succeeded", output=AGENT_PLAN)
            small, _ = run_create(tenant=tenant, workflow="agent_payment",
                                  actor="user:olivia", input={"request": "pay a little"})
            step_report(tenant=tenant, run_id=small.run_id, step_id="plan",
                        actor="client:agent", status="succeeded", output=SMALL_PLAN)
            step_report(tenant=tenant, run_id=small.run_id, step_id="pay",  # archived by a
                        actor="client:bank", status="succeeded",          # child run
                        output={"paid": SMALL_PLAN["amount"], "bank_ref": "B-900"})
        self.stdout.write(f"demo tenant {tenant.slug} ready")
