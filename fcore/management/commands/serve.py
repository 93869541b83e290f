"""python manage.py serve — the web server, a Celery worker and the scheduler, together.

What `make run` ends with. Each part is its own process (gunicorn, `celery worker`,
`celery beat`), as in production; Ctrl-C stops them all. Steps never run inside a web
request: the worker executes them.

Stopping: the first SIGINT (Ctrl-C) or SIGTERM sends SIGTERM to all three at once, so
gunicorn finishes its requests, the worker finishes the tasks it is running (Celery's warm
shutdown) and beat exits; an idle machine is down in about 3 s. (A terminal's Ctrl-C also
reaches the children themselves: gunicorn then stops without waiting, the worker is still
warm.) A second signal, or
anything still running `--stop-timeout` seconds after the first, is killed: a step cut
short that way is delivered again by the sweeper when its lease runs out.
"""

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from kombu.transport import filesystem

from fcore.management.processes import (
    QUICK_STOP_TRANSPORT,
    beat_argv,
    signing_key_register,
    web_argv,
    worker_argv,
)

__all__ = ["QUICK_STOP_TRANSPORT", "QuickStopFilesystemTransport", "Command"]


def _worker_stopping() -> bool:
    """This process is a Celery worker that was asked to shut down (warm or cold)."""
    from celery.worker import state

    return any(flag is not None and flag is not False
               for flag in (state.should_stop, state.should_terminate))


class QuickStopFilesystemTransport(filesystem.Transport):
    """kombu's file-system transport, for the worker `serve` starts on the embedded broker.

    Celery runs a transport without asynchronous I/O (this one) in a blocking loop that
    looks at its shutdown flag only between calls of `drain_events(timeout=2.0)`, and
    drains once more after it has seen it (`celery.worker.loops.synloop`): a warm shutdown
    of an idle worker sat 2–4 s in the file-system polling. This transport polls in
    slices of `slice_s` and gives up at the first slice that starts after the worker was
    told to stop; delivery is otherwise unchanged. Running tasks still finish: they are
    the pool's, not the loop's.
    """

    slice_s = 0.2

    def drain_events(self, connection, timeout=None):
        started = time.monotonic()
        while not _worker_stopping():
            remaining = None if timeout is None else timeout - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                break
            try:
                return super().drain_events(
                    connection, timeout=self.slice_s if remaining is None
                    else min(self.slice_s, remaining))
            except TimeoutError:  # socket.timeout: nothing in this slice
                continue
        raise TimeoutError()


def _descendants(pid: int) -> list[int]:
    """Pids of a process's children and theirs, from /proc (Linux; elsewhere none)."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):  # any thread may fork
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


class Command(BaseCommand):
    help = "Serve FC: gunicorn on PORT, one Celery worker and celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery processes")
        parser.add_argument("--stop-timeout", type=float, default=30.0,
                            help="seconds a stop waits for running requests and tasks "
                                 "before it kills them (a second Ctrl-C kills at once)")

    def handle(self, *args, port, host, workers, concurrency, stop_timeout, **options):
        signing_key_register(self)
        commands = {"web": web_argv(host=host, port=port, workers=workers),
                    "worker": worker_argv(concurrency=concurrency),
                    "beat": beat_argv()}
        # links in notifications point at this server unless FCORE_PUBLIC_URL says otherwise
        env = {**os.environ}
        env.setdefault("FCORE_PUBLIC_URL", f"http://{host}:{port}")

        # A signal only records itself and wakes the select() below through the socket:
        # the stop starts at once instead of at the next poll.
        received: list[int] = []
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        procs = {}
        try:
            for name, cmd in commands.items():
                procs[name] = subprocess.Popen(cmd, env=env)
            self._banner(host, port)
            while not received:
                exited = [name for name, proc in procs.items() if proc.poll() is not None]
                if exited:
                    self.stderr.write(f"{exited[0]} exited with {procs[exited[0]].returncode}; "
                                      "stopping")
                    break
                self._sleep(wake_r, 0.5)
        finally:
            self._stop(procs, wake_r, received, stop_timeout)
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                if handler is not None:  # None: not installed from Python
                    signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()

    def _stop(self, procs, wake_r, received, timeout):
        """SIGTERM to every child at once; wait for all of them together, up to `timeout`
        or until another signal arrives; then SIGKILL what is left, pool processes
        included."""
        signals_seen = len(received)
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        if any(proc.poll() is None for proc in procs.values()):
            self.stdout.write("Stopping: running tasks finish first "
                              "(Ctrl-C again to stop now).")
        deadline = time.monotonic() + timeout
        while any(proc.poll() is None for proc in procs.values()):
            if len(received) > signals_seen:
                self.stderr.write("stopping now")
                break
            if time.monotonic() >= deadline:
                self.stderr.write(f"still running after {timeout:g} s; stopping now")
                break
            self._sleep(wake_r, min(0.05, max(0.0, deadline - time.monotonic())))
        for proc in procs.values():
            if proc.poll() is None:
                for pid in [proc.pid, *_descendants(proc.pid)]:  # parent first: no reforks
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"process {proc.pid} did not exit after SIGKILL")

    @staticmethod
    def _sleep(wake_r, seconds: float) -> None:
        """Wait up to `seconds`, returning early when a signal arrives."""
        if select.select([wake_r], [], [], seconds)[0]:
            try:
                while wake_r.recv(64):
                    pass
            except BlockingIOError:
                pass

    def _banner(self, host, port):
        from fcore.management.commands.demo_seed import DEMO_PASSWORD, PEOPLE

        url = f"http://{host}:{port}"
        fc = "fc" if settings.FCORE_INSTALLED else ".venv/bin/python manage.py"
        db = settings.DATABASES["default"]
        people = "\n".join(f"    {name:<8} {', '.join(groups)}" for name, groups in PEOPLE)
        self.stdout.write(f"""
Federation Core is starting at {url}
  console   {url}/console/      admin {url}/admin/      API docs {url}/api/docs/
  database  {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}
  broker    {settings.CELERY_BROKER_URL}

Demo logins (password: {DEMO_PASSWORD}):
    admin    superuser
{people}

API credentials (in another terminal):
    {fc} create_api_client --tenant tenant_omega --name harness \\
        --scopes "runs:read runs:write gates:request gates:resolve audit:read"
Then prove PT-004 end to end:
    {fc} proof --url {url} --kid <kid> --secret <secret>

Ctrl-C stops the web server, the worker and the scheduler.
""")
