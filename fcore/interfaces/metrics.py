"""Prometheus metrics, read from the database at scrape time.

Reading the shared database (not per-process counters) gives the same answer whichever
web process is scraped and counts the work of every Celery worker. Everything exported is
a count or a cumulative histogram over rows that never change once ended, so the series
behave as Prometheus counters should. No tenant data is exported.

    fc_runs{status}                          runs by status (gauge)
    fc_step_duration_seconds                 ended steps, started → ended (histogram)
    fc_gate_wait_seconds                     resolved gates, opened → resolved (histogram)
    fc_policy_decisions_total{decision}      decisions by result (counter)
    fc_audit_events_total                    audit events appended (counter; rate() = append rate)
"""

import hmac
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from audit.models import AuditEvent
from gates.models import Gate, PolicyDecision
from runs.models import Run, StepRun

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600)
GATE_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)


def _histogram(name, doc, queryset, start, end, buckets):
    duration = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    rows = queryset.filter(**{f"{start}__isnull": False, f"{end}__isnull": False}).annotate(
        d=duration)
    counts = rows.aggregate(
        total=Count("pk"), seconds=Sum("d"),
        **{f"le_{i}": Count("pk", filter=Q(d__lte=timedelta(seconds=b)))
           for i, b in enumerate(buckets)})
    cumulative = [(str(float(b)), counts[f"le_{i}"]) for i, b in enumerate(buckets)]
    cumulative.append(("+Inf", counts["total"]))
    total = counts["seconds"]
    seconds = total.total_seconds() if isinstance(total, timedelta) else (total or 0) / 1e6
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=seconds)


class DatabaseCollector:
    """Collects FC's metrics from the database on every scrape."""

    def collect(self):
        runs = GaugeMetricFamily("fc_runs", "Runs by status", labels=["status"])
        for row in Run.objects.values("status").annotate(n=Count("pk")):
            runs.add_metric([row["status"]], row["n"])
        yield runs
        decisions = CounterMetricFamily("fc_policy_decisions", "Policy decisions by result",
                                        labels=["decision"])
        for row in PolicyDecision.objects.values("decision").annotate(n=Count("pk")):
            decisions.add_metric([row["decision"]], row["n"])
        yield decisions
        events = CounterMetricFamily("fc_audit_events", "Audit events appended")
        events.add_metric([], AuditEvent.objects.count())
        yield events
        yield _histogram("fc_step_duration_seconds", "Step duration (started to ended)",
                         StepRun.objects.all(), "started_at", "ended_at", STEP_BUCKETS)
        yield _histogram("fc_gate_wait_seconds", "Gate wait (opened to resolved)",
                         Gate.objects.all(), "created_at", "resolved_at", GATE_BUCKETS)


def metrics_view(request):
    """`GET /metrics`; with FCORE_METRICS_TOKEN set, it needs `Authorization: Bearer <it>`.
    In production it always needs it: without a configured token it answers 401."""
    token = getattr(settings, "FCORE_METRICS_TOKEN", "")
    if token or settings.PRODUCTION:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(status=401)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
