"""python manage.py policy_simulate --bundle FILE [--limit N] [--fail-on-change].

Re-evaluates the tenant's last N recorded decisions with the bundle's policies standing in
for the current ones, and prints how many would change. In CI, `--fail-on-change` exits
non-zero when any would. A progress bar (decisions re-evaluated) goes to stderr when it is
a terminal, or with `--progress`; stdout and the exit code are the same either way.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from fcore.models import Tenant
from fcore.progress import add_progress_arguments, command_progress
from gates.policies import DEFAULT_LIMIT, RuleError, policy_simulate
from runs.bundles import BundleError, bundle_check
from runs.management.commands.load_workflows import read_bundle


class Command(BaseCommand):
    help = "Simulate a bundle's policies against recorded decisions; nothing is saved."

    def add_arguments(self, parser):
        parser.add_argument("--bundle", required=True)
        parser.add_argument("--tenant", help="default: the bundle's tenant")
        parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument("--fail-on-change", action="store_true")
        add_progress_arguments(parser)

    def handle(self, *args, bundle, tenant=None, limit, as_json, fail_on_change, **options):
        path = Path(bundle)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
            data = read_bundle(path, text)
            bundle_check(data, source=str(path), text=text)
        except BundleError as exc:
            raise CommandError(str(exc)) from None
        slug = tenant or data["tenant"]
        try:
            tenant_obj = Tenant.objects.get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {slug!r}") from None
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            with command_progress(options, desc="policy_simulate", unit="decision") as bar:
                report = policy_simulate(tenant=tenant_obj, drafts=data.get("policies") or [],
                                         limit=limit, progress=bar).as_dict()
        except RuleError as exc:
            raise CommandError(f"{path}: {exc}") from None
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(f"{report['evaluated']} decisions re-evaluated, "
                              f"{report['changed']} would change")
            for change, count in report["transitions"].items():
                self.stdout.write(f"  {change}: {count}")
            for example in report["examples"]:
                self.stdout.write(f"  e.g. run {example['run_id']} step {example['step_id']}: "
                                  f"{example['change']} ({example['would_be']['reason']})")
        if fail_on_change and report["changed"]:
            raise CommandError(f"{report['changed']} decision(s) would change")
