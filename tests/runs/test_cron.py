"""Cron slots (runs.cron): checking expressions and zones, and the slots a schedule has
in its time zone, through daylight-saving changes."""

from datetime import UTC, datetime

import pytest

from runs.cron import cron_problem, slot_name, slot_next, slots_between, timezone_problem


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "problem"), [
    ("0 2 * * *", None),
    ("*/15 9-17 * * mon-fri", None),
    ("@daily", None),
    ("@reboot", "is not one of"),
    ("0 2 * *", "must have five fields"),
    ("0 0 2 * * * *", "must have five fields"),
    ("61 2 * * *", "is not a valid cron expression"),
    ("0 0 30 2 *", "names no date"),
    ("", "must be a cron expression"),
    (5, "must be a cron expression"),
])
def test_cron_problem(expression, problem):
    found = cron_problem(expression)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(("name", "ok"), [
    ("UTC", True), ("Europe/Berlin", True), ("America/New_York", True),
    ("Mars/Olympus", False), ("../../etc/passwd", False), ("", False), (None, False),
])
def test_timezone_problem(name, ok):
    assert (timezone_problem(name) is None) is ok


def test_slots_are_read_in_the_schedules_time_zone():
    slots, count, first = slots_between("0 2 * * *", "America/New_York",
                                        after=utc(2026, 12, 1), until=utc(2026, 12, 4))
    # 02:00 in New York in winter (UTC-5) is 07:00 UTC
    assert slots == [utc(2026, 12, 1, 7), utc(2026, 12, 2, 7), utc(2026, 12, 3, 7)]
    assert (count, first) == (3, utc(2026, 12, 1, 7))


def test_a_time_skipped_when_clocks_go_forward_runs_at_the_old_offset():
    # Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist
    slots, _, _ = slots_between("30 2 * * *", "Europe/Berlin",
                                after=utc(2026, 3, 27), until=utc(2026, 3, 31))
    assert slots == [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30),
                     utc(2026, 3, 29, 1, 30),  # 03:30 CEST
                     utc(2026, 3, 30, 0, 30)]  # 02:30 CEST


def test_an_hourly_schedule_has_one_slot_for_the_skipped_hour():
    slots, count, _ = slots_between("0 * * * *", "Europe/Berlin",
                                    after=utc(2026, 3, 29, 0), until=utc(2026, 3, 29, 3))
    # 02:00 (missing) and 03:00 CEST are the same instant: one slot
    assert slots == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2), utc(2026, 3, 29, 3)]
    assert count == 3


def test_a_time_repeated_when_clocks_go_back_runs_once():
    # Europe/Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    slots, _, _ = slots_between("30 2 * * *", "Europe/Berlin",
                                after=utc(2026, 10, 24), until=utc(2026, 10, 26))
    assert slots == [utc(2026, 10, 24, 0, 30),  # 02:30 CEST
                     utc(2026, 10, 25, 0, 30)]  # the first 02:30 (CEST), only


def test_slots_between_keeps_the_newest_and_counts_all():
    slots, count, first = slots_between("* * * * *", "UTC", after=utc(2026, 12, 3, 0),
                                        until=utc(2026, 12, 3, 10), keep=5)
    assert count == 600
    assert first == utc(2026, 12, 3, 0, 1)
    assert slots == [utc(2026, 12, 3, 9, 56), utc(2026, 12, 3, 9, 57),
                     utc(2026, 12, 3, 9, 58), utc(2026, 12, 3, 9, 59), utc(2026, 12, 3, 10)]


def test_the_window_excludes_after_and_includes_until():
    slots, _, _ = slots_between("0 * * * *", "UTC", after=utc(2026, 12, 3, 1),
                                until=utc(2026, 12, 3, 3))
    assert slots == [utc(2026, 12, 3, 2), utc(2026, 12, 3, 3)]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), [
    ("0 2 * * *", "UTC", utc(2026, 12, 3, 2), utc(2026, 12, 4, 2)),
    ("0 2 * * *", "Europe/Berlin", utc(2026, 12, 3, 14), utc(2026, 12, 4, 1)),
    ("0 2 * * *", "Europe/Berlin", utc(2026, 6, 3, 14), utc(2026, 6, 4, 0)),
    ("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 30)),
    ("@hourly", "Asia/Kolkata", utc(2026, 12, 3, 14, 5), utc(2026, 12, 3, 14, 30)),
])
def test_slot_next(expression, zone, after, expected):
    assert slot_next(expression, zone, after=after) == expected


def test_slot_name_is_iso_8601_utc():
    assert slot_name(utc(2026, 12, 3, 2)) == "2026-12-03T02:00:00Z"
