"""Request ids, JSON logs and the Prometheus metrics endpoint's token (its figures:
test_metrics.py)."""

import io
import json
import logging

import pytest
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
