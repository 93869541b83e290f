"""Wake-ups for executors waiting in a claim (`POST /workflows/tasks/claim` with `wait_s`).

When an external step becomes claimable (it starts, or its lease expires) the change's
commit announces it on the tenant's channel (`steps_ready_announce`). A waiting claim
listens *before* it looks for work, so nothing that commits in between is missed, and then
sleeps until an announcement or its deadline — the database is not polled:

- with a Redis broker (`CELERY_BROKER_URL=redis://…`, production and CI) the channel is
  Redis pub/sub, `fc:steps-ready:<tenant id>`: every web process hears every announcement;
- otherwise (the embedded `filesystem://` default) it is a condition variable in this
  process; a step started by another process (the worker, another web worker) is seen at
  the next re-check, `LOCAL_RECHECK_S` later.

Even with Redis a waiting claim looks again every `RECHECK_S`: an announcement lost with a
broker blip delays work, it never strands it.
"""

import logging
import threading
import time
from contextlib import contextmanager

from django.conf import settings

log = logging.getLogger(__name__)

RECHECK_S = 5.0
LOCAL_RECHECK_S = 1.0
CHANNEL = "fc:steps-ready:{tenant_id}"

_local = threading.Condition()
_generation = {"n": 0}
_redis = {"client": None, "url": None}


def _redis_url() -> str | None:
    url = settings.CELERY_BROKER_URL or ""
    return url if url.startswith(("redis://", "rediss://")) else None


def _client():
    import redis  # celery[redis] brings it; imported only with a Redis broker

    url = _redis_url()
    if _redis["client"] is None or _redis["url"] != url:
        _redis["client"] = redis.Redis.from_url(url, socket_timeout=5,
                                                socket_connect_timeout=2)
        _redis["url"] = url
    return _redis["client"]


def steps_ready_announce(tenant_id: int) -> None:
    """Wake the claims waiting for this tenant's work. Called after a commit; a broker
    failure is logged, never raised (waiting claims re-check on their own)."""
    with _local:
        _generation["n"] += 1
        _local.notify_all()
    if _redis_url():
        try:
            _client().publish(CHANNEL.format(tenant_id=tenant_id), b"1")
        except Exception:  # noqa: BLE001 - any Redis failure; the claim re-checks anyway
            log.warning("could not announce ready steps of tenant %s", tenant_id,
                        exc_info=True)


class _LocalListener:
    def __init__(self):
        self.seen = _generation["n"]

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + min(timeout, LOCAL_RECHECK_S)
        with _local:
            while _generation["n"] == self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                _local.wait(left)
            self.seen = _generation["n"]
            return True


class _RedisListener:
    def __init__(self, pubsub):
        self.pubsub = pubsub

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + min(timeout, RECHECK_S)
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None:
                while self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                    pass  # one wake-up for a burst
                return True
        return False


@contextmanager
def steps_ready_listener(tenant_id: int):
    """Listen to the tenant's announcements for the block; `listener.wait(timeout)` returns
    True when one came (or may have), False at the timeout."""
    pubsub = None
    if _redis_url():
        try:
            pubsub = _client().pubsub()
            pubsub.subscribe(CHANNEL.format(tenant_id=tenant_id))
        except Exception:  # noqa: BLE001 - Redis down: the local condition and re-checks
            log.warning("could not listen for ready steps; re-checking instead", exc_info=True)
            pubsub = None
    try:
        yield _RedisListener(pubsub) if pubsub is not None else _LocalListener()
    finally:
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001
                log.debug("closing a pubsub failed", exc_info=True)
