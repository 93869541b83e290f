"""python manage.py proof --url URL --kid KID --secret SECRET — the PT-004 proof.

A thin interface to `fcore.interfaces.proof`: it talks to the server only over HTTP, writes
`proof-report.md` and `proof-report.json` and exits non-zero when any test fails.
"""

import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fcore.interfaces.proof import ProofConfig, proof_run, report_summary, report_write


class Command(BaseCommand):
    help = ("Run the three PT-004 control-flow tests against a live server and write a "
            "proof report (Markdown and JSON).")
    requires_system_checks = []  # an outside client: the local database is not used

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
        parser.add_argument("--kid", required=True, help="API client key id")
        parser.add_argument("--secret", required=True, help="API client secret")
        parser.add_argument("--tenant", default="tenant_omega")
        parser.add_argument("--sub", default="pt004_test_harness",
                            help="actor id of the executor (creates the runs)")
        parser.add_argument("--approver-sub", default="pt004_approver",
                            help="actor id of the second approver (four-eyes)")
        parser.add_argument("--out", default=None,
                            help="report directory (default var/proof/<UTC timestamp>/)")
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="seconds to wait for each expected state")

    def handle(self, *args, url, kid, secret, tenant, sub, approver_sub, out, timeout,
               **options):
        config = ProofConfig(url=url, kid=kid, secret=secret, tenant=tenant, sub=sub,
                             approver_sub=approver_sub, timeout=timeout)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
        report = proof_run(config)
        if out is None:
            stamp = report["date"].replace("-", "").replace(":", "")  # 20260206T101500Z
            out_dir = Path(settings.VAR_DIR) / "proof" / stamp
        else:
            out_dir = Path(out)
        md, js = report_write(report, out_dir)
        self.stdout.write(report_summary(report))
        self.stdout.write(f"report: {md}\n        {js}")
        if not report["passed"]:
            failed = report["summary"]["failed"]
            raise CommandError(f"PT-004 proof FAILED: {failed} of "
                               f"{report['summary']['tests']} tests failed (see {md})")
