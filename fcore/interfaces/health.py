"""`/healthz` (the process answers) and `/readyz` (the service works), on django-health-check.

`/healthz` touches nothing: no database, no broker — a liveness probe that restarts a
process only when the process itself is stuck. `/readyz` runs every part below (the
library's check classes; the database part is its own `Database`) and answers 200 with each
part's status and figures, or 503 naming the failing parts:

    database     SELECT 1 on a connection of its own
    broker       the configured Celery broker (CELERY_BROKER_URL) accepts a connection;
                 on the embedded file-system broker: its folders exist and are writable
    beat         beat's heartbeat (fcore.tasks.heartbeat) is newer than
                 FCORE_READY_BEAT_MAX_AGE_S: beat schedules, the broker carries, a worker runs
    checkpoints  no tenant has an audit event outside a checkpoint for longer than
                 FCORE_READY_CHECKPOINT_MAX_AGE_S
    backlog      at most FCORE_READY_BACKLOG_MAX webhook deliveries or emails are still
                 undelivered FCORE_READY_BACKLOG_MAX_AGE_S after they were queued

No tenant's name or data is in the answer (it needs no credentials).
"""

import asyncio
import dataclasses
import os
import typing
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from health_check import Database, HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView
from kombu import Connection

from fcore.interfaces import readiness


def healthz(request):
    """Alive: answers without a query (a liveness probe)."""
    return JsonResponse({"ok": True})  # its shape is relied on by probes: unchanged


class _Part:
    """A part of `/readyz`: `part` names it in the answer; `figures` are shown with it."""

    part: typing.ClassVar[str]

    @property
    def timeout(self) -> timedelta:  # the library's budget per check
        return timedelta(seconds=settings.FCORE_READY_TIMEOUT_S)

    @property
    def figures(self) -> dict:
        return self.__dict__.setdefault("_figures", {})


@dataclasses.dataclass
class DatabasePart(_Part, Database):
    part: typing.ClassVar[str] = "database"


@dataclasses.dataclass
class _ProbePart(_Part, HealthCheck):
    """A check whose probe runs in the request's thread (and so on its database connection)."""

    async def run(self) -> None:
        await sync_to_async(self.probe)()

    def probe(self) -> None:
        raise NotImplementedError


@dataclasses.dataclass
class BrokerPart(_ProbePart):
    part: typing.ClassVar[str] = "broker"

    def probe(self) -> None:
        url = settings.CELERY_BROKER_URL
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
        if url.startswith("filesystem://"):
            self.figures["transport"] = "filesystem"
            folders = {options.get(k) for k in ("data_folder_in", "data_folder_out",
                                                "control_folder") if options.get(k)}
            missing = [f for f in sorted(folders) if not os.access(f, os.W_OK | os.X_OK)]
            if missing:
                raise ServiceUnavailable(f"broker folder not writable: {len(missing)} of "
                                         f"{len(folders)}")
            return
        timeout = settings.FCORE_READY_TIMEOUT_S
        with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
            self.figures["transport"] = conn.transport.driver_name
            try:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                       timeout=timeout)
            except Exception as exc:  # kombu raises the transport's own errors
                raise ServiceUnavailable(f"broker unreachable ({type(exc).__name__})") from exc


@dataclasses.dataclass
class BeatPart(_ProbePart):
    part: typing.ClassVar[str] = "beat"

    def probe(self) -> None:
        age = readiness.beat_age_s()
        limit = settings.FCORE_READY_BEAT_MAX_AGE_S
        self.figures.update(age_s=_round(age), max_age_s=limit)
        if age is None:
            raise ServiceUnavailable("beat has not ticked yet")
        if age > limit:
            raise ServiceUnavailable(f"beat's last tick is {age:.0f} s old (limit {limit:g} s)")


@dataclasses.dataclass
class CheckpointsPart(_ProbePart):
    part: typing.ClassVar[str] = "checkpoints"

    def probe(self) -> None:
        lag = readiness.checkpoint_lag_s()
        limit = settings.FCORE_READY_CHECKPOINT_MAX_AGE_S
        late = [age for age in lag.values() if age > limit]
        self.figures.update(oldest_unsealed_age_s=_round(max(lag.values(), default=None)),
                            tenants_pending=len(lag), tenants_late=len(late),
                            max_age_s=limit)
        if late:
            raise ServiceUnavailable(
                f"{len(late)} tenant(s) have audit events outside a checkpoint for more than "
                f"{limit:g} s (oldest {max(late):.0f} s)")


@dataclasses.dataclass
class BacklogPart(_ProbePart):
    part: typing.ClassVar[str] = "backlog"

    def probe(self) -> None:
        limit = settings.FCORE_READY_BACKLOG_MAX_AGE_S
        figures = readiness.backlog(limit)
        self.figures.update({kind: {**f, "oldest_age_s": _round(f["oldest_age_s"])}
                             for kind, f in figures.items()},
                            max_age_s=limit, max_overdue=settings.FCORE_READY_BACKLOG_MAX)
        overdue = {kind: f["overdue"] for kind, f in figures.items() if f["overdue"]}
        if sum(overdue.values()) > settings.FCORE_READY_BACKLOG_MAX:
            shown = ", ".join(f"{n} {kind}" for kind, n in overdue.items())
            raise ServiceUnavailable(f"undelivered for more than {limit:g} s: {shown}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class ReadyView(HealthCheckView):
    """`GET /readyz`: every part's status; 503 when any fails (the library says 500)."""

    checks = (DatabasePart, BrokerPart, BeatPart, CheckpointsPart, BacklogPart)

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            self.results = await asyncio.gather(
                *(check.get_result(executor) for check in self.get_checks()))
        parts = {}
        for result in self.results:
            check = result.check
            parts[check.part] = {
                "status": "failing" if result.error else "ok",
                **({"detail": result.error.message} if result.error else {}),
                **check.figures, "time_ms": round(result.time_taken * 1000, 1)}
        failing = [name for name, part in parts.items() if part["status"] == "failing"]
        return JsonResponse({"status": "failing" if failing else "ok", "failing": failing,
                             "parts": parts}, status=503 if failing else 200)
