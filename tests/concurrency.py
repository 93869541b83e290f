"""Real concurrency for PostgreSQL tests: each call in its own thread and connection."""

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection


def concurrently(n: int, call) -> list:
    """Start `n` calls at the same instant, each in its own thread and connection."""
    barrier = threading.Barrier(n)

    def worker(i):
        barrier.wait()
        try:
            return call(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(worker, range(n)))
