"""Wake-ups: "this audit stream moved" told to the processes waiting on it, so a waiting
read (`runs.waits`) sleeps instead of querying the database in a loop.

`stream_moved(stream, seq)` is called inside the transaction that appends to a stream
(`audit.services`, the one place events are appended); when that transaction commits,
the news goes out. A stream here is only a name: `runs.wakeups` uses
`steps-ready/<tenant id>` (no audit stream; `seq` 0) to wake the executors' waiting claims.

- with Redis (`FCORE_WAKEUP_URL`, by default the Celery broker when it is `redis://…`): a
  `PUBLISH fc:stream:<stream> <seq>`, sent by a thread of the process (`_Publisher`) so the
  commit does not wait on Redis; a waiter subscribes to its stream's channel and blocks on
  the subscription socket;
- in the embedded default (no Redis): one of `STAMP_BUCKETS` stamp files under
  `FCORE_VAR_DIR/wakeups/` (the stream's bucket) is touched; a waiter looks at its
  bucket's modification time every `STAMP_POLL_S` seconds, a `stat()` and no query.
  Streams sharing a bucket wake each other's waiters, which then find their stream
  unchanged and wait again.

A wake-up is only a hint: the waiter reads the stream's head again before answering, so a
lost or spurious wake-up costs latency, never correctness. A waiter whose Redis is gone
falls back to sleeping in steps of `FALLBACK_POLL_S` (the caller re-reads the head after
each). Publishing never raises: a failed publish is logged, the change is committed.
"""

import atexit
import hashlib
import logging
import os
import queue
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

log = logging.getLogger("fcore.wakeups")

CHANNEL_PREFIX = "fc:stream:"
STAMP_BUCKETS = 256
STAMP_POLL_S = 0.05
FALLBACK_POLL_S = 0.5
STOP_TIMEOUT_S = 3.0  # at exit, for the last wake-ups to go out

_redis = None


def _redis_url() -> str:
    return getattr(settings, "FCORE_WAKEUP_URL", "") or ""


def _client():
    """This process's Redis client (its pool notices a fork by itself)."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(_redis_url(), socket_connect_timeout=2,
                                      health_check_interval=30)
    return _redis


def _stamp(stream: str) -> Path:
    bucket = int(hashlib.sha256(stream.encode()).hexdigest()[:8], 16) % STAMP_BUCKETS
    return Path(settings.VAR_DIR) / "wakeups" / f"{bucket:03d}"


def _publish(stream: str, seq: int) -> None:
    try:
        if _redis_url():
            _client().publish(CHANNEL_PREFIX + stream, seq)
        else:
            path = _stamp(stream)
            try:
                os.utime(path)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
    except Exception as exc:  # a wake-up is a hint: the change is committed regardless
        log.warning("wake-up for %s not sent: %s", stream, exc)


class _Publisher:
    """Publishes to Redis from a thread of its own, so a commit does not wait for Redis:
    the committing thread only queues (stream, seq); the thread sends what has queued up
    in one pipeline. One per process (started again after a fork)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pid, self.queue = None, None

    def put(self, stream: str, seq: int) -> None:
        if self.pid != os.getpid():
            with self.lock:
                if self.pid != os.getpid():
                    self.queue = queue.SimpleQueue()
                    thread = threading.Thread(target=self._run, args=(self.queue,),
                                              daemon=True, name="fc-wakeups")
                    thread.start()
                    atexit.register(self._stop, self.queue, thread)
                    self.pid = os.getpid()
        self.queue.put((stream, seq))

    @staticmethod
    def _stop(waiting: queue.SimpleQueue, thread: threading.Thread) -> None:
        """At exit: send what is queued and end the thread, so that interpreter shutdown
        never stops it holding the Redis pool's lock (the client's finaliser would then
        wait for that lock forever and the process would not exit)."""
        waiting.put(None)
        thread.join(timeout=STOP_TIMEOUT_S)

    @staticmethod
    def _send(batch: list[tuple[str, int]]) -> None:
        try:
            pipe = _client().pipeline(transaction=False)
            for stream, seq in batch:
                pipe.publish(CHANNEL_PREFIX + stream, seq)
            pipe.execute()
        except Exception as exc:  # a wake-up is a hint: the changes are committed
            log.warning("%d wake-ups not sent: %s", len(batch), exc)

    @staticmethod
    def _run(waiting: queue.SimpleQueue) -> None:
        while True:
            batch = [waiting.get()]
            while not waiting.empty() and len(batch) < 500:
                batch.append(waiting.get_nowait())
            stopping = None in batch
            batch = [item for item in batch if item is not None]
            if batch:
                _Publisher._send(batch)
            if stopping:
                return


_publisher = _Publisher()


def _moved(stream: str, seq: int) -> None:
    if _redis_url():
        _publisher.put(stream, seq)
    else:
        _publish(stream, seq)


def stream_moved(stream: str, seq: int) -> None:
    """Tell the stream's waiters, once the current transaction commits, that its head is
    at `seq` now (nothing if it rolls back)."""
    transaction.on_commit(lambda: _moved(stream, seq), robust=True)


class _RedisListener:
    def __init__(self, stream: str):
        self.pubsub = _client().pubsub()
        self.pubsub.subscribe(CHANNEL_PREFIX + stream)
        # subscribed on the server before the caller reads the head: no publish is missed
        confirmed = self.pubsub.get_message(timeout=2)
        if not confirmed or confirmed["type"] != "subscribe":
            self.pubsub.close()
            raise ConnectionError("no subscription confirmed")

    def wait(self, timeout: float) -> None:
        self.pubsub.get_message(timeout=timeout)

    def close(self) -> None:
        self.pubsub.close()


class _StampListener:
    def __init__(self, stream: str):
        self.path = _stamp(stream)
        self.seen = self._mtime()

    def _mtime(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return 0

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(STAMP_POLL_S, left))
            now = self._mtime()
            if now != self.seen:
                self.seen = now
                return

    def close(self) -> None:
        pass


class _SleepListener:
    """Redis unreachable: sleep a little; the caller reads the head again."""

    def wait(self, timeout: float) -> None:
        time.sleep(min(FALLBACK_POLL_S, timeout))

    def close(self) -> None:
        pass


class Listener:
    """Wake-ups of one stream, from the moment it is made (make it before reading the head
    the first time, so no commit falls between the read and the wait). `wait(timeout)`
    returns at the next wake-up or after `timeout` seconds, whichever comes first."""

    def __init__(self, stream: str):
        if not _redis_url():
            self.inner = _StampListener(stream)
            return
        try:
            self.inner = _RedisListener(stream)
        except Exception as exc:
            log.warning("wake-ups of %s by polling: %s", stream, exc)
            self.inner = _SleepListener()

    def wait(self, timeout: float) -> None:
        if timeout <= 0:
            return
        try:
            self.inner.wait(timeout)
        except Exception as exc:  # the connection broke while waiting
            log.warning("wake-up wait failed: %s", exc)
            self.inner.close()
            self.inner = _SleepListener()
            self.inner.wait(timeout)

    def close(self) -> None:
        try:
            self.inner.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
