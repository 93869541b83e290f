"""Waiting reads: `GET /workflows/runs/{run_id}?wait_s=N&after_seq=S` answers once the
run's audit stream is past seq S, or after N seconds unchanged (DESIGN §12).

The waiter sleeps on a wake-up (`fcore.wakeups`: Redis pub/sub, or a stamp file in the
embedded default), never on a query loop: the stream's head is read once before waiting
and once after each wake-up. While it sleeps, the thread gives its database connection
back (closes it), so a hundred waiting clients hold no database connection; the read that
follows opens one again.
"""

import time

from django.db import connections

from audit.models import AuditStream
from fcore.wakeups import Listener

from .models import Run

MAX_WAIT_S = 30


def stream_head_seq(stream: str) -> int:
    """The seq of the stream's last committed event (0 for none)."""
    seq = AuditStream.objects.filter(name=stream).values_list("head_seq", flat=True).first()
    return seq or 0


def _release_connections() -> None:
    """Close this thread's idle connections (none is inside a transaction here)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def run_wait(run: Run, *, after_seq: int, wait_s: float) -> int:
    """Block until the run's stream head passes `after_seq` or `wait_s` seconds pass;
    returns the head seq last read. `run` is already tenant-checked by the caller."""
    deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
    with Listener(run.stream_name) as listener:
        while True:
            seq = stream_head_seq(run.stream_name)
            left = deadline - time.monotonic()
            if seq > after_seq or left <= 0:
                return seq
            _release_connections()
            listener.wait(left)
