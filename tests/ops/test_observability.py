"""Request ids, JSON logs and the Prometheus metrics endpoint."""

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter

from fcore.observability import RequestIdFilter

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_request_id(client):
    first = client.get("/healthz")
    assert len(first["X-Request-ID"]) == 32
    assert client.get("/healthz")["X-Request-ID"] != first["X-Request-ID"]
    echoed = client.get("/healthz", HTTP_X_REQUEST_ID="trace-abc-12345")
    assert echoed["X-Request-ID"] == "trace-abc-12345"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="x\ninjected: yes")
    assert hostile["X-Request-ID"] != "x\ninjected: yes"


def test_logs_are_json_lines_with_the_request_id(client, settings):
    config = settings.LOGGING
    assert config["handlers"]["console"]["formatter"] == "json"
    assert config["handlers"]["console"]["filters"] == ["request_id"]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(config["formatters"]["json"]["fmt"]))
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)
    try:
        client.get("/workflows/runs", HTTP_X_REQUEST_ID="req-json-log-1",
                   HTTP_AUTHORIZATION="Bearer omega_broken")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    rejected = [r for r in lines if r.get("request_id") == "req-json-log-1"]
    assert rejected, lines
    assert all({"levelname", "name", "message", "asctime"} <= set(r) for r in rejected)
    assert not any("omega_broken" in json.dumps(r) for r in lines)  # tokens never logged


def families(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def test_metrics_count_runs_steps_gates_decisions_and_events(api, approver, client):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}", {"decision": "approve"})
    metrics = families(client)
    runs = {s.labels["status"]: s.value for s in metrics["fc_runs"].samples}
    assert runs == {"running": 1.0}
    decisions = {s.labels["decision"]: s.value for s in metrics["fc_policy_decisions"].samples
                 if s.name.endswith("_total")}
    assert decisions == {"allow": 1.0, "flag": 1.0}
    steps = {s.labels.get("le"): s.value for s in metrics["fc_step_duration_seconds"].samples
             if s.name.endswith("_bucket")}
    assert steps["+Inf"] == 1.0
    gates = {s.labels.get("le"): s.value for s in metrics["fc_gate_wait_seconds"].samples
             if s.name.endswith("_bucket")}
    assert gates["+Inf"] == 1.0
    events = [s.value for s in metrics["fc_audit_events"].samples if s.name.endswith("_total")]
    assert events and events[0] >= 10


def test_metrics_token(client, settings):
    settings.FCORE_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert ok.status_code == 200


def test_metrics_in_production_need_a_token_even_when_none_is_configured(client, settings):
    settings.PRODUCTION, settings.FCORE_METRICS_TOKEN = True, ""
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    settings.FCORE_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
