"""Wake-ups (fcore.wakeups): a commit that appends to a stream wakes that stream's
listeners — through stamp files in the embedded default, through Redis pub/sub where
FCORE_WAKEUP_URL names one — a rollback wakes nobody, and an unreachable Redis degrades to
a short sleep instead of an error."""

import os
import threading
import time
import uuid

import pytest
from django.db import transaction

from fcore import wakeups
from tests.conftest import service_missing


@pytest.fixture(params=["stamp", "redis"])
def backend(request, settings):
    if request.param == "stamp":
        settings.FCORE_WAKEUP_URL = ""
    else:
        url = settings.FCORE_WAKEUP_URL or "redis://127.0.0.1:6379/8"
        settings.FCORE_WAKEUP_URL = url
        wakeups._redis = None
        try:
            wakeups._client().ping()
        except Exception as exc:  # noqa: BLE001 - any failure: no Redis here
            service_missing(f"Redis at {url} ({exc})")
    yield request.param
    wakeups._redis = None


def _woken(stream: str, act, timeout: float = 10) -> float:
    """Seconds a listener of `stream` waited while `act()` ran in another thread."""
    with wakeups.Listener(stream) as listener:
        threading.Timer(0.3, act).start()
        started = time.monotonic()
        listener.wait(timeout)
        return time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_a_commit_wakes_the_streams_listener(backend):
    stream = f"run/{uuid.uuid4()}"

    def commit():
        with transaction.atomic():
            wakeups.stream_moved(stream, 7)

    assert _woken(stream, commit) < 5  # woken, not timed out


@pytest.mark.django_db(transaction=True)
def test_a_rollback_wakes_nobody(backend):
    stream = f"run/{uuid.uuid4()}"

    def rollback():
        try:
            with transaction.atomic():
                wakeups.stream_moved(stream, 7)
                raise RuntimeError
        except RuntimeError:
            pass

    assert _woken(stream, rollback, timeout=1.5) >= 1.5


def test_an_unreachable_redis_degrades_to_sleeping(settings):
    settings.FCORE_WAKEUP_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    wakeups._redis = None
    try:
        with wakeups.Listener("run/x") as listener:
            assert isinstance(listener.inner, wakeups._SleepListener)
            started = time.monotonic()
            listener.wait(0.2)
            assert time.monotonic() - started >= 0.2
        wakeups._publish("run/x", 1)  # logged, not raised
    finally:
        wakeups._redis = None


EXITING = """
import django, os, sys
django.setup()
from fcore import wakeups
wakeups._moved(sys.argv[1], 1)  # queued for the publisher thread; the process ends now
"""


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_process_that_exits_sends_its_last_wake_up_and_ends(backend, settings, tmp_path):
    """A short command (load_workflows, create_api_client, …) that committed a change
    publishes its wake-up at exit and ends: the publisher thread is stopped, not killed
    holding the Redis pool's lock."""
    import subprocess
    import sys

    stream = f"exit/{uuid.uuid4()}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "fcore.settings",
           "FCORE_WAKEUP_URL": settings.FCORE_WAKEUP_URL, "FCORE_VAR_DIR": str(tmp_path)}
    with wakeups.Listener(stream) as listener:
        done = subprocess.run([sys.executable, "-c", EXITING, stream], env=env, timeout=60)
        assert done.returncode == 0
        started = time.monotonic()
        listener.wait(10)
        assert time.monotonic() - started < 9, "the wake-up queued before exit was not sent"
