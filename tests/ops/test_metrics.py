"""`/metrics`: figures kept as events happen, bounded queries at scrape time, HTTP and
Celery figures. Counters are cumulative over the test session's processes (multiprocess
files), so every assertion is on the difference a test's own actions make."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from fcore.tasks import heartbeat

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}"""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.content.decode())
            for s in family.samples}


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run_to_gate(api, approver, amount=25000):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": amount}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}", {"decision": "approve"})
    return run_id


def test_domain_figures_count_runs_steps_gates_decisions_and_events(api, approver, client):
    before = scrape(client)
    run_to_gate(api, approver)
    after = scrape(client)
    assert value(after, "fc_runs", status="running") == 1.0  # a gauge: runs not ended
    assert value(after, "fc_runs", status="pending") == 0.0
    assert value(after, "fc_gates_open") == 0.0

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("fc_policy_decisions_total", decision="allow") == 1.0
    assert grew("fc_policy_decisions_total", decision="flag") == 1.0
    assert grew("fc_step_duration_seconds_count") == 1.0
    assert grew("fc_step_duration_seconds_bucket", le="+Inf") == 1.0
    assert grew("fc_gate_wait_seconds_count") == 1.0
    assert grew("fc_audit_events_total") >= 10


def test_a_run_that_ends_is_counted_by_its_status(api, client):
    before = scrape(client)
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 10}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/status", {"status": "cancelled", "reason": "test"})
    after = scrape(client)
    assert (value(after, "fc_runs_ended_total", status="cancelled")
            - value(before, "fc_runs_ended_total", status="cancelled")) == 1.0


def test_a_rolled_back_change_counts_nothing(pt004, client):
    from django.db import transaction

    from audit.services import admin_stream_name, audit_append

    before = value(scrape(client), "fc_audit_events_total")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_append(tenant_id=pt004.id, stream=admin_stream_name(pt004.slug),
                     code="FC-ADM-001", actor="user:t", data={})
        raise RuntimeError("roll back")
    assert value(scrape(client), "fc_audit_events_total") == before


def scrape_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        scrape(client)
    return len(queries)


def test_a_scrape_makes_the_same_bounded_queries_however_many_rows(api, approver, client):
    run_to_gate(api, approver)
    first = scrape_queries(client)
    for amount in (25000, 30000, 40000, 50000, 60000):
        run_to_gate(api, approver, amount)
    assert scrape_queries(client) == first
    with CaptureQueriesContext(connection) as queries:
        scrape(client)
    for query in queries:  # no table counted whole: each query filters on an indexed column
        sql = query["sql"].lower()
        assert " where " in sql, sql


def test_http_requests_are_counted_and_timed_by_route_and_status(api, client):
    before = scrape(client)
    client.get("/healthz")
    client.get("/no/such/page")
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 10}}).json()["run_id"]
    api.get(f"/workflows/runs/{run_id}")
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("fc_http_requests_total", method="GET", route="/healthz", status="200") == 1
    assert grew("fc_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert grew("fc_http_requests_total", method="POST", route="/workflows/runs",
                status="201") == 1
    detail = "/workflows/runs/<str:run_id>"
    assert grew("fc_http_requests_total", method="GET", route=detail, status="200") == 1
    assert grew("fc_http_request_duration_seconds_count", method="GET", route=detail) == 1
    assert not any(str(run_id) in str(key) for key in after)  # routes, never raw paths


def test_celery_tasks_are_counted_by_name_and_state_and_timed(pt004, client):
    before = scrape(client)
    heartbeat.delay()
    heartbeat.delay()
    after = scrape(client)
    task = "fcore.tasks.heartbeat"
    assert (value(after, "fc_celery_tasks_total", task=task, state="SUCCESS")
            - value(before, "fc_celery_tasks_total", task=task, state="SUCCESS")) == 2
    assert (value(after, "fc_celery_task_duration_seconds_count", task=task)
            - value(before, "fc_celery_task_duration_seconds_count", task=task)) == 2
    assert value(after, "fc_beat_heartbeat_age_seconds") < 5
