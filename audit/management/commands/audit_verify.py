"""python manage.py audit_verify [--tenant SLUG] [--stream NAME] [--public-key KEY …]
[--since-checkpoint FILE …]

Re-walks every hash chain and checks it against the signed checkpoints, then (unless
`--no-facts`) every run's rows against the events that record them (`audit.facts`); exits
non-zero and lists the failures when anything is broken. With `-v 2` it prints how many events per
second it checked. A progress bar (events checked) goes to stderr when it is a terminal, or
with `--progress`; stdout and the exit code are the same either way.
"""

import json
import os
from pathlib import Path

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from audit import signing
from audit.verify import audit_verify
from fcore.progress import add_progress_arguments, command_progress


class Command(BaseCommand):
    help = ("Recompute every audit chain and check it against the signed checkpoints; "
            "exits non-zero and lists failures when any breaks.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="only this tenant's streams and checkpoints (slug)")
        parser.add_argument("--stream", help="only this stream")
        parser.add_argument("--public-key", action="append", dest="public_keys", default=[],
                            help="trust only these checkpoint keys (base64 or a file holding "
                                 "base64 or PEM); repeatable. Default: the registered keys")
        parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                            help="processes scanning the events (default: up to 2, one "
                                 "per core)")
        parser.add_argument("--since-checkpoint", action="append", default=[], dest="kept",
                            metavar="FILE",
                            help="a checkpoint (C2SP signed note, GET /workflows/audit/"
                                 "checkpoint) kept earlier: the log must still extend it; "
                                 "repeatable")
        parser.add_argument("--no-checkpoints", action="store_true",
                            help="check the chains only")
        parser.add_argument("--no-facts", action="store_true",
                            help="do not check the rows the events record (runs, steps, "
                                 "decisions, gates, votes) against the events")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print the report as JSON")
        add_progress_arguments(parser)

    def handle(self, *args, tenant=None, stream=None, **options):
        tenant_ids = None
        if tenant:
            row = apps.get_model("fcore", "Tenant").objects.filter(slug=tenant).first()
            if row is None:
                raise CommandError(f"no tenant {tenant!r}")
            tenant_ids = [row.id]
        keys = _pinned_keys(options["public_keys"]) if options["public_keys"] else None
        try:
            kept = [Path(path).read_text(encoding="utf-8") for path in options["kept"]]
        except (OSError, UnicodeError) as exc:
            raise CommandError(f"--since-checkpoint: {exc}") from None
        with command_progress(options, desc="audit_verify", unit="event") as progress:
            report = audit_verify(tenant_ids=tenant_ids, stream=stream, public_keys=keys,
                                  checkpoints=not options["no_checkpoints"],
                                  facts=not options["no_facts"],
                                  workers=max(1, options["workers"]), progress=progress,
                                  kept_checkpoints=kept)
        if options["as_json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(f"{report.streams} streams, {report.events} events: "
                              f"{'OK' if report.ok else 'BROKEN'}")
            if report.keys:
                self.stdout.write(f"  {report.checkpoints} checkpoints, signed by key(s) "
                                  f"{', '.join(report.keys)}"
                                  f"{' (pinned)' if keys else ' (registered in the database)'}")
            if options["verbosity"] >= 2:
                self.stdout.write(f"  {report.seconds:.2f} s: {report.events_per_second:,.0f} "
                                  "events/s")
            for failure in report.failures:
                where = failure.get("checkpoint") or (
                    f"{failure['stream']}#{failure['seq']}" if failure.get("seq") is not None
                    else failure["stream"])
                self.stdout.write(f"  {where}: {failure['problem']}")
        if not report.ok:
            raise CommandError(f"{len(report.failures)} chain failure(s)")


def _pinned_keys(values: list[str]) -> dict[str, bytes]:
    keys = {}
    for value in values:
        path = Path(value)
        text = path.read_text() if path.is_file() else value
        try:
            raw = signing.public_key_parse(text)
        except signing.BadKey as exc:
            raise CommandError(f"--public-key {value[:40]}: {exc}") from None
        keys[signing.key_id(raw)] = raw
    return keys
