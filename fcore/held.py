"""Which runs this thread holds locked (`runs.engine.run_lock`), so that services below
the engine can assert they run under the lock: gate services change a gate and append to
its run's audit stream, which only the holder of the run lock may do."""

import threading
from contextlib import contextmanager


class _Held(threading.local):
    def __init__(self):
        self.runs: set = set()


_held = _Held()


@contextmanager
def run_held(run_id):
    """Mark `run_id` as locked by this thread for the block."""
    _held.runs.add(run_id)
    try:
        yield
    finally:
        _held.runs.discard(run_id)


def assert_run_held(run) -> None:
    """Raise unless this thread holds the lock of `run`."""
    if run.pk not in _held.runs:
        raise RuntimeError(f"run {run.pk} is changed without its run lock (runs.engine.run_lock)")
