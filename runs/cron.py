"""Cron slots of a schedule (DESIGN §11): which instants a cron expression names in a
time zone. Pure functions; croniter parses and iterates the expression, zoneinfo maps
the zone's wall-clock times to instants.

A schedule's cron is read in its time zone's wall clock, then each wall-clock time is
mapped to UTC the way `datetime(..., tzinfo=zone)` does (PEP 495, `fold=0`):

- a time that does not exist (the hour skipped when clocks go forward) is taken at the
  offset before the change, so `30 2 * * *` in Europe/Berlin runs at 03:30 summer time;
- a time that occurs twice (the hour repeated when clocks go back) runs once, at its first
  occurrence.

Two wall-clock times that map to the same instant give one slot. Slots are whole minutes
in UTC; a slot is named by its instant in ISO 8601 UTC (`2026-12-03T02:00:00Z`).
"""

from collections import deque
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

KEYWORDS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# beyond the largest offset change a zone makes at once: wall-clock times this far before
# `after` (or after `until`) can still map into the window
_MARGIN = timedelta(hours=3)


def cron_problem(expression) -> str | None:
    """Why `expression` is not a five-field cron expression (or an @-keyword such as
    `@daily`), None when it is one."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a cron expression such as '0 2 * * *'"
    text = expression.strip()
    if text.startswith("@"):
        return None if text in KEYWORDS else (
            f"{text!r} is not one of {', '.join(KEYWORDS)}")
    if len(text.split()) != 5:
        return (f"{text!r} must have five fields (minute hour day-of-month month "
                "day-of-week)")
    if not croniter.is_valid(text):
        return f"{text!r} is not a valid cron expression"
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        return f"{text!r} names no date (such as 30 February)"
    return None


def timezone_problem(name) -> str | None:
    """Why `name` is not an IANA time zone (such as 'Europe/Berlin'), None when it is one."""
    if not isinstance(name, str) or not name:
        return "must be an IANA time zone such as 'Europe/Berlin'"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}"
    return None


def slot_name(slot: datetime) -> str:
    """A slot's name: its instant in ISO 8601 UTC, to the second, with `Z`."""
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def slots_between(expression: str, zone_name: str, *, after: datetime, until: datetime,
                  keep: int = 100) -> tuple[list[datetime], int, datetime | None]:
    """The slots `s` with `after < s <= until` in UTC: the `keep` newest (oldest first),
    how many there are in all, and the oldest of them (None when there is none)."""
    zone = ZoneInfo(zone_name)
    walk = croniter(expression.strip(), _wall_clock(after, zone) - _MARGIN)
    stop = _wall_clock(until, zone) + _MARGIN
    # found in wall-clock order, which is UTC order but within a margin around a change:
    # the slots of two margins (at most 360 minutes) more than `keep` give the newest
    newest: deque[datetime] = deque(maxlen=keep + 400)
    recent: set[datetime] = set()  # instants counted within the margin, to drop repeats
    order: deque[datetime] = deque()  # the same, in the order found
    count, first = 0, None
    while True:
        wall = walk.get_next(datetime)
        if wall > stop:
            break
        slot = wall.replace(tzinfo=zone).astimezone(UTC)
        if not after < slot <= until or slot in recent:
            continue
        count += 1
        first = slot if first is None else min(first, slot)
        newest.append(slot)
        recent.add(slot)
        order.append(slot)
        while order[0] < slot - 2 * _MARGIN:  # an instant this old cannot come again
            recent.discard(order.popleft())
    return sorted(newest)[-keep:], count, first


def slot_next(expression: str, zone_name: str, *, after: datetime) -> datetime:
    """The first slot after `after`, in UTC."""
    zone = ZoneInfo(zone_name)
    walk = croniter(expression.strip(), _wall_clock(after, zone) - _MARGIN)
    best = None
    while True:
        wall = walk.get_next(datetime)
        slot = wall.replace(tzinfo=zone).astimezone(UTC)
        if slot > after and (best is None or slot < best):
            best = slot
        # once wall-clock times pass `after` by the margin, no later one maps earlier
        if best is not None and wall > _wall_clock(best, zone) + _MARGIN:
            return best
