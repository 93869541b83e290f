"""Heartbeats: the time a periodic process last ticked (`fcore.models.Heartbeat`).

`heartbeat_tick("beat")` runs as a beat-scheduled task (`fcore.tasks.heartbeat`) every
FCORE_HEARTBEAT_INTERVAL_S; `/readyz` compares `heartbeat_at("beat")` with
FCORE_READY_BEAT_MAX_AGE_S. One row per name, updated in place: no growth, no scan.
"""

from datetime import datetime

from django.utils import timezone

from .models import Heartbeat

BEAT = "beat"


def heartbeat_tick(name: str = BEAT) -> datetime:
    """Record that `name` ticked now (an upsert of its one row)."""
    now = timezone.now()
    Heartbeat.objects.update_or_create(name=name, defaults={"at": now})
    return now


def heartbeat_at(name: str = BEAT) -> datetime | None:
    """When `name` last ticked; None if it never did."""
    found = Heartbeat.objects.filter(name=name).values_list("at", flat=True)[:1]
    return found[0] if found else None
