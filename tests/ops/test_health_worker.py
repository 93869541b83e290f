"""A real worker and beat: beat's heartbeat reaches `/readyz` through the broker and a
worker, goes stale when beat stops, and the worker's pool processes' task figures are
added up (multiprocess files) and served on FCORE_WORKER_METRICS_PORT."""

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fcore.models import Heartbeat
from tests.ops.test_health import free_port
from tests.worker import Beat, Worker, require_broker, require_worker_mode

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def worker_samples(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds} s")


def test_beats_heartbeat_goes_through_a_worker_and_goes_stale_when_beat_stops(
        client, settings, tmp_path):
    require_worker_mode()
    require_broker()
    port = free_port()
    env = {"FCORE_HEARTBEAT_INTERVAL_S": "1", "FCORE_WORKER_METRICS_PORT": str(port),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    worker = Worker(log_path=tmp_path / "worker.log", env=env, concurrency=2)
    beat = Beat(log_path=tmp_path / "beat.log", schedule=tmp_path / "schedule", env=env)
    try:
        worker.wait_ready()
        beat.wait_ready()
        wait_until(lambda: Heartbeat.objects.filter(name="beat").exists(), 30,
                   "a heartbeat")
        ready = client.get("/readyz").json()
        assert ready["parts"]["beat"]["status"] == "ok", ready
        key = ("fc_celery_tasks_total", (("state", "SUCCESS"), ("task", "fcore.tasks.heartbeat")))
        ticks = wait_until(lambda: worker_samples(port).get(key), 30, "the worker's figures")
        assert ticks >= 1  # counted in a pool process, served by the main one
        duration = ("fc_celery_task_duration_seconds_count",
                    (("task", "fcore.tasks.heartbeat"),))
        assert worker_samples(port)[duration] >= 1
    finally:
        beat.stop()
    settings.FCORE_READY_BEAT_MAX_AGE_S = 2
    try:
        time.sleep(3)  # no beat: no new tick reaches the worker
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "beat" in response.json()["failing"]
    finally:
        worker.stop()
