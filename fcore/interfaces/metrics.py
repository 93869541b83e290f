"""`GET /metrics`: Prometheus text, with no table counted at scrape time.

Two sources:
- the counters and histograms every web and worker process keeps as events happen
  (`fcore.metrics`, prometheus_client's multiprocess mode), added up over the processes;
- gauges from bounded queries, each on an index and over rows that are not ended yet
  (`fcore.interfaces.readiness`): the scrape costs the same however long the history is.

    fc_runs{status}                              runs not ended (pending, running, paused)
    fc_gates_open                                open gates
    fc_notifications_undelivered{kind}           webhook deliveries / emails not delivered yet
    fc_notifications_oldest_age_seconds{kind}    age of the oldest of them
    fc_beat_heartbeat_age_seconds                seconds since beat's last tick
    fc_checkpoint_lag_seconds                    oldest audit event outside a checkpoint
    fc_checkpoint_lagging_tenants                tenants with such events

No tenant data is exported.
"""

import hmac

from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from fcore.interfaces import readiness
from gates.models import Gate, GateStatus
from runs.models import RUN_TERMINAL, Run, RunStatus

RUN_OPEN = [s for s in RunStatus.values if s not in RUN_TERMINAL]


class BoundedCollector:
    """Gauges from a fixed number of indexed queries over rows not ended yet."""

    def collect(self):
        runs = GaugeMetricFamily("fc_runs", "Runs not ended, by status", labels=["status"])
        counted = dict(Run.objects.filter(status__in=RUN_OPEN).values("status")
                       .annotate(n=Count("pk")).order_by().values_list("status", "n"))
        for status in RUN_OPEN:
            runs.add_metric([status], counted.get(status, 0))
        yield runs
        yield GaugeMetricFamily("fc_gates_open", "Open gates",
                                value=Gate.objects.filter(status=GateStatus.OPEN).count())
        undelivered = GaugeMetricFamily("fc_notifications_undelivered",
                                        "Webhook deliveries and emails not delivered yet",
                                        labels=["kind"])
        oldest = GaugeMetricFamily("fc_notifications_oldest_age_seconds",
                                   "Age of the oldest undelivered webhook delivery or email",
                                   labels=["kind"])
        for kind, figures in readiness.backlog(settings.FCORE_READY_BACKLOG_MAX_AGE_S).items():
            undelivered.add_metric([kind], figures["undelivered"])
            oldest.add_metric([kind], figures["oldest_age_s"] or 0)
        yield undelivered
        yield oldest
        age = readiness.beat_age_s()
        if age is not None:
            yield GaugeMetricFamily("fc_beat_heartbeat_age_seconds",
                                    "Seconds since beat's last heartbeat", value=age)
        lag = readiness.checkpoint_lag_s()
        yield GaugeMetricFamily("fc_checkpoint_lag_seconds",
                                "Age of the oldest audit event outside a checkpoint (0: none)",
                                value=max(lag.values(), default=0))
        yield GaugeMetricFamily("fc_checkpoint_lagging_tenants",
                                "Tenants with audit events outside a checkpoint",
                                value=len(lag))


def metrics_view(request):
    """`GET /metrics`; with FCORE_METRICS_TOKEN set, it needs `Authorization: Bearer <it>`.
    In production it always needs it: without a configured token it answers 401."""
    token = getattr(settings, "FCORE_METRICS_TOKEN", "")
    if token or settings.PRODUCTION:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(status=401)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.FCORE_METRICS_DIR))
    registry.register(BoundedCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
