"""Two beats at once on PostgreSQL (real transactions, a connection per thread): every
slot of a schedule gets exactly one run, and missed slots are recorded skipped once."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from django.db import connection

from audit.codes import Code
from audit.models import AuditEvent
from runs.beat import schedules_start_due
from runs.bundles import bundle_load
from runs.cron import slot_next
from runs.models import Run, Schedule
from tests.concurrency import concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("audit_streams_verify")]

BUNDLE = """\
tenant: tenant_sched_pg
workflows:
  - name: tick
    steps: [{id: a, type: noop}]
schedules:
""" + "".join(f"  - {{name: s{i}, workflow: tick, cron: '*/5 * * * *'}}\n" for i in range(4))


def test_two_beats_at_once_start_one_run_per_schedule_and_slot():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    bundle_load(yaml.safe_load(BUNDLE), actor="system:test")
    start = datetime(2026, 12, 3, 9, 2, tzinfo=UTC)
    Schedule.objects.update(last_slot=start,
                            next_slot=slot_next("*/5 * * * *", "UTC", after=start))
    # beat was down for a while: 09:05 … 09:25 are due, only 09:25 is within catch-up
    now = datetime(2026, 12, 3, 9, 26, tzinfo=UTC)
    for tick in range(3):
        at = now + timedelta(minutes=5 * tick)
        results = concurrently(2, lambda i, at=at: schedules_start_due(now=at))
        started = [entry for result in results for entry in result.started]
        assert sorted(name for name, _, _ in started) == ["s0", "s1", "s2", "s3"], tick
        # the row lock: the second beat passed over what the first had in hand
        assert sum(result.existing + result.failed for result in results) == 0, tick
    runs = list(Run.objects.values_list("idempotency_key", flat=True))
    assert len(runs) == len(set(runs)) == 12
    assert {key for key in runs if key.startswith("schedule:s0:")} == {
        "schedule:s0:2026-12-03T09:25:00Z", "schedule:s0:2026-12-03T09:30:00Z",
        "schedule:s0:2026-12-03T09:35:00Z"}
    assert AuditEvent.objects.filter(code=Code.RUN_CREATED).count() == 12
    skipped = AuditEvent.objects.filter(code=Code.SCHEDULE_SLOTS_SKIPPED)
    assert sorted((e.data["schedule"], e.data["count"]) for e in skipped) == [
        ("s0", 4), ("s1", 4), ("s2", 4), ("s3", 4)]
    for schedule in Schedule.objects.all():
        assert schedule.last_slot == datetime(2026, 12, 3, 9, 35, tzinfo=UTC)
        assert schedule.last_run.idempotency_key.endswith("09:35:00Z")
