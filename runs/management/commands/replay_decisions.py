"""python manage.py replay_decisions RUN [RUN …] [--json] — determinism check.

Re-evaluates every policy decision recorded for each run with its recorded context and the
policy versions it pinned, and reports any difference. Exits 1 when one differs."""

import json

from django.core.management.base import BaseCommand, CommandError

from fcore.errors import NotFound
from runs.engine import parse_run_id
from runs.models import Run
from runs.replay import replay_decisions


class Command(BaseCommand):
    help = "Re-evaluate a run's recorded decisions against their pinned policy versions."

    def add_arguments(self, parser):
        parser.add_argument("runs", nargs="+", metavar="RUN", help="run id(s)")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print a JSON report")

    def handle(self, *args, runs, as_json: bool = False, **options):
        replays = []
        for value in runs:
            try:
                run = Run.objects.get(pk=parse_run_id(value))
            except (NotFound, Run.DoesNotExist):
                raise CommandError(f"no run {value!r}") from None
            replays.append(replay_decisions(run))
        if as_json:
            self.stdout.write(_dumps([{"run_id": r.run_id, "checked": r.checked, "ok": r.ok,
                                       "differences": r.differences} for r in replays]))
        else:
            for replay in replays:
                verdict = "same" if replay.ok else f"{len(replay.differences)} difference(s)"
                self.stdout.write(f"{replay.run_id}: {replay.checked} decision(s) replayed, "
                                  f"{verdict}")
                for diff in replay.differences:
                    self.stdout.write(f"  {diff['step_id']} attempt {diff['attempt']} "
                                      f"{diff['field']}: recorded {diff['recorded']!r}, "
                                      f"replayed {diff['replayed']!r}")
        if not all(r.ok for r in replays):
            raise SystemExit(1)


def _dumps(value) -> str:
    return json.dumps(value, indent=2, default=str)
