"""`/healthz` (alive, no query) and `/readyz` (each part really failing, one at a time)."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.checkpoints import checkpoints_seal_all
from fcore.heartbeats import heartbeat_tick
from fcore.models import Heartbeat
from fcore.tasks import heartbeat
from gates.models import DeliveryStatus, EmailNotification, Gate, WebhookDelivery
from gates.webhook_endpoints import webhook_endpoint_create
from tests.conftest import service_missing

PARTS = ["database", "broker", "beat", "checkpoints", "backlog"]


def test_healthz_answers_without_a_database_connection(client):
    # no django_db mark: pytest-django makes any database access here raise
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.django_db
def test_healthz_makes_no_query(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/healthz").status_code == 200


def ready(client):
    response = client.get("/readyz")
    body = response.json()
    assert set(body["parts"]) == set(PARTS)
    return response.status_code, body


@pytest.fixture
def ticking(pt004):
    """A tenant with fresh audit events and beat's heartbeat run through Celery (eager)."""
    heartbeat.delay()
    return pt004


def test_readyz_is_200_with_every_part_ok(client, ticking):
    status, body = ready(client)
    assert status == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert all(part["status"] == "ok" for part in body["parts"].values())
    assert body["parts"]["beat"]["age_s"] < 5
    assert body["parts"]["checkpoints"]["tenants_pending"] >= 1  # loaded, not sealed yet
    assert body["parts"]["backlog"]["webhook"] == {"undelivered": 0, "overdue": 0,
                                                   "oldest_age_s": None}
    assert "tenant_omega" not in json.dumps(body)  # no tenant named to the unauthenticated


def test_readyz_names_the_broker_when_it_is_unreachable(client, ticking, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    status, body = ready(client)
    assert status == 503
    assert body["failing"] == ["broker"]
    assert "unreachable" in body["parts"]["broker"]["detail"]


def test_readyz_follows_a_redis_broker_that_stops(client, ticking, settings, tmp_path):
    port = free_port()
    try:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        service_missing("redis-server")
    try:
        wait_for_port(port)
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
        status, body = ready(client)
        assert status == 200, body
        assert body["parts"]["broker"]["transport"] == "redis"
    finally:
        server.terminate()
        server.wait(10)
    status, body = ready(client)
    assert status == 503 and body["failing"] == ["broker"]


def test_readyz_checks_the_embedded_brokers_folders(client, ticking, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    gone = tmp_path / "gone"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(gone), "data_folder_out": str(gone),
        "control_folder": str(tmp_path)}
    status, body = ready(client)
    assert status == 503 and body["failing"] == ["broker"]
    gone.mkdir()
    status, body = ready(client)
    assert status == 200, body
    assert body["parts"]["broker"]["transport"] == "filesystem"


def test_readyz_fails_when_beats_heartbeat_is_stale_or_missing(client, ticking, settings):
    stale = timezone.now() - timedelta(seconds=settings.FCORE_READY_BEAT_MAX_AGE_S + 30)
    Heartbeat.objects.filter(name="beat").update(at=stale)
    status, body = ready(client)
    assert status == 503 and body["failing"] == ["beat"]
    assert body["parts"]["beat"]["age_s"] > settings.FCORE_READY_BEAT_MAX_AGE_S
    Heartbeat.objects.all().delete()
    status, body = ready(client)
    assert status == 503 and body["parts"]["beat"]["detail"] == "beat has not ticked yet"
    heartbeat_tick()
    assert ready(client)[0] == 200


def test_readyz_fails_while_audit_events_wait_too_long_for_a_checkpoint(client, ticking,
                                                                         settings):
    settings.FCORE_READY_CHECKPOINT_MAX_AGE_S = 0.2
    time.sleep(0.3)  # the bundles' events are now older than the limit, and not sealed
    status, body = ready(client)
    assert status == 503 and body["failing"] == ["checkpoints"]
    assert body["parts"]["checkpoints"]["tenants_late"] >= 1
    checkpoints_seal_all()
    status, body = ready(client)
    assert status == 200, body
    assert body["parts"]["checkpoints"]["tenants_pending"] == 0


@pytest.mark.parametrize("kind", ["webhook", "email"])
def test_readyz_fails_on_a_notification_backlog(client, ticking, settings, django_user_model,
                                                 api, kind):
    row = undelivered(kind, ticking, django_user_model, api)
    status, body = ready(client)
    assert status == 200, body  # queued just now: not a backlog
    assert body["parts"]["backlog"][kind]["undelivered"] == 1
    old = timezone.now() - timedelta(seconds=settings.FCORE_READY_BACKLOG_MAX_AGE_S + 60)
    type(row).objects.filter(pk=row.pk).update(created_at=old)
    status, body = ready(client)
    assert status == 503 and body["failing"] == ["backlog"]
    assert body["parts"]["backlog"][kind]["overdue"] == 1
    settings.FCORE_READY_BACKLOG_MAX = 1  # a tolerated backlog
    assert ready(client)[0] == 200
    settings.FCORE_READY_BACKLOG_MAX = 0
    type(row).objects.filter(pk=row.pk).update(status=DeliveryStatus.DELIVERED)
    assert ready(client)[0] == 200


def test_readyz_names_the_database_when_it_is_unreachable(tmp_path):
    """A process whose DATABASE_URL points where no server listens: 503 naming the database
    (and the parts that read it), never a 500."""
    script = ("import django, json; django.setup(); from django.test import Client; "
              "r = Client().get('/readyz'); print(r.status_code, json.dumps(r.json()))")
    env = {**os.environ, "DATABASE_URL": f"postgres://fc@127.0.0.1:{free_port()}/fc",
           "FCORE_VAR_DIR": str(tmp_path), "CELERY_BROKER_URL": "filesystem://",
           "DJANGO_SETTINGS_MODULE": "fcore.settings", "FCORE_READY_TIMEOUT_S": "2"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip().splitlines()[-1]
    status, body = out.split(" ", 1)
    body = json.loads(body)
    assert status == "503"
    assert "database" in body["failing"] and "broker" not in body["failing"]
    assert body["parts"]["broker"]["status"] == "ok"


def undelivered(kind, tenant, users, api):
    if kind == "webhook":
        endpoint, _ = webhook_endpoint_create(tenant=tenant, name="ops",
                                              url="http://127.0.0.1:9/hook", actor="user:t")
        return WebhookDelivery.objects.create(
            delivery_id=uuid.uuid4(), endpoint=endpoint, event="gate.opened", payload={},
            next_attempt_at=timezone.now())
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate = Gate.objects.get(run__run_id=run_id)  # the policy's flag opened it
    user = users.objects.create_user("olga", email="olga@example.org")
    return EmailNotification.objects.create(tenant=tenant, gate=gate, event="gate.opened",
                                            user=user, email=user.email)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")
