"""Prometheus figures kept as events happen (the scrape reads them: `fcore.interfaces.metrics`).

Every web and worker process counts what it does in prometheus_client's multiprocess mode
(files under FCORE_METRICS_DIR, settings): `/metrics` adds up every process of the machine,
so the figures do not depend on which web process is scraped, and no scrape counts a table.
Domain figures are counted when the transaction that made the change commits
(`count_on_commit`, `observe_on_commit`): a rolled-back change counts nothing.

    fc_http_requests_total{method,route,status}     HTTP requests answered (HttpMetricsMiddleware)
    fc_http_request_duration_seconds{method,route}  their latency (histogram)
    fc_celery_tasks_total{task,state}               Celery tasks run, by end state (signals)
    fc_celery_task_duration_seconds{task}           their run time (histogram)
    fc_audit_events_total                           audit events appended
    fc_policy_decisions_total{decision}             policy decisions by result
    fc_runs_ended_total{status}                     runs that reached a terminal status
    fc_step_duration_seconds                        ended steps, started → ended (histogram)
    fc_gate_wait_seconds                            resolved gates, opened → resolved (histogram)
"""

import time
from functools import partial

from django.conf import settings
from django.db import transaction

settings.FCORE_METRICS_DIR  # noqa: B018 - sets PROMETHEUS_MULTIPROC_DIR before the import

from prometheus_client import Counter, Histogram  # noqa: E402

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600)
GATE_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TASK_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
UNMATCHED = "<unmatched>"

HTTP_REQUESTS = Counter("fc_http_requests", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("fc_http_request_duration_seconds",
                          "HTTP request latency, first middleware in to response out",
                          ["method", "route"], buckets=HTTP_BUCKETS)
TASKS = Counter("fc_celery_tasks", "Celery tasks run, by end state", ["task", "state"])
TASK_DURATION = Histogram("fc_celery_task_duration_seconds", "Celery task run time",
                          ["task"], buckets=TASK_BUCKETS)
AUDIT_EVENTS = Counter("fc_audit_events", "Audit events appended")
DECISIONS = Counter("fc_policy_decisions", "Policy decisions by result", ["decision"])
RUNS_ENDED = Counter("fc_runs_ended", "Runs that reached a terminal status", ["status"])
STEP_DURATION = Histogram("fc_step_duration_seconds", "Step duration (started to ended)",
                          buckets=STEP_BUCKETS)
GATE_WAIT = Histogram("fc_gate_wait_seconds", "Gate wait (opened to resolved)",
                      buckets=GATE_BUCKETS)


def count_on_commit(counter, *labels: str, amount: float = 1) -> None:
    """Add `amount` to the counter when the current transaction commits (now, outside one)."""
    child = counter.labels(*labels) if labels else counter
    transaction.on_commit(partial(child.inc, amount))


def observe_on_commit(histogram, start, end) -> None:
    """Observe `end - start` (datetimes) when the current transaction commits."""
    if start is None or end is None:
        return
    transaction.on_commit(partial(histogram.observe, max((end - start).total_seconds(), 0.0)))


class HttpMetricsMiddleware:
    """Counts and times every request by method, route pattern (never the raw path: the
    label set stays bounded) and status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = "/" + match.route if match is not None and match.route else UNMATCHED
        method = request.method if request.method in _METHODS else "other"
        HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


_task_started: dict[str, float] = {}


def worker_metrics_serve(**_kwargs) -> None:
    """celery.signals.worker_ready: with FCORE_WORKER_METRICS_PORT set, the worker's main
    process serves the figures of this machine's processes (the multiprocess files) on
    that port, for a worker on a machine or container without a web process."""
    port = settings.FCORE_WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.FCORE_METRICS_DIR))
    start_http_server(port, addr=settings.FCORE_WORKER_METRICS_HOST, registry=registry)


def task_started(task_id=None, **_kwargs) -> None:
    """celery.signals.task_prerun"""
    if task_id:
        _task_started[task_id] = time.perf_counter()


def task_ended(task_id=None, task=None, state=None, **_kwargs) -> None:
    """celery.signals.task_postrun: the task's end state (SUCCESS, FAILURE, RETRY, …)."""
    started = _task_started.pop(task_id, None)
    name = getattr(task, "name", None) or "unknown"
    TASKS.labels(name, str(state or "UNKNOWN")).inc()
    if started is not None:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started)
