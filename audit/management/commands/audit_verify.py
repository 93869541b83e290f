"""python manage.py audit_verify [--tenant SLUG] [--stream NAME] — re-walk hash chains."""

import json

from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditStream
from audit.verify import audit_verify_streams


class Command(BaseCommand):
    help = "Recompute every audit chain; exits non-zero and lists failures when any breaks."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="only this tenant's streams (slug)")
        parser.add_argument("--stream", help="only this stream")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print the report as JSON")

    def handle(self, *args, tenant=None, stream=None, **options):
        streams = AuditStream.objects.all()
        if tenant:
            streams = streams.filter(tenant__slug=tenant)
        if stream:
            streams = streams.filter(name=stream)
        report = audit_verify_streams(streams)
        if options["as_json"]:
            self.stdout.write(_dumps(report.as_dict()))
        else:
            self.stdout.write(f"{report.streams} streams, {report.events} events: "
                              f"{'OK' if report.ok else 'BROKEN'}")
            for failure in report.failures:
                self.stdout.write(f"  {failure['stream']}#{failure['seq']}: {failure['problem']}")
        if not report.ok:
            raise CommandError(f"{len(report.failures)} chain failure(s)")


def _dumps(value) -> str:
    return json.dumps(value, indent=2)
