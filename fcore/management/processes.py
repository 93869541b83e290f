"""The three long-running processes of FC — web (gunicorn), worker (Celery) and beat
(Celery's scheduler) — as command lines, one place for `serve` (all three together, what
`make run` ends with) and for `web`, `worker` and `beat` (one each: the Procfile, a
container, a systemd unit)."""

import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections

# The worker's embedded-broker transport (fcore.management.commands.serve), named on its
# command line (Celery's `--` options).
QUICK_STOP_TRANSPORT = "fcore.management.commands.serve:QuickStopFilesystemTransport"


def log_level() -> str:
    return os.environ.get("FCORE_LOG_LEVEL", "warning").lower()


def _program(name: str) -> str:
    """A console script of this interpreter's environment (gunicorn, celery)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def web_argv(*, host: str, port: int, workers: int, threads: int | None = None) -> list[str]:
    """gunicorn with `workers` processes of `threads` threads each (gthread,
    FCORE_WEB_THREADS) sharing a pool of database connections per process: a waiting read
    holds a thread, not a process nor a connection (docs/operations.md, "Worker model")."""
    level = log_level()
    threads = threads or settings.FCORE_WEB_THREADS
    return [_program("gunicorn"), "fcore.wsgi", "-b", f"{host}:{port}", "-w", str(workers),
            "--worker-class", "gthread", "--threads", str(threads),
            # the threads share a pool of database connections (settings, FCORE_DB_POOL)
            "--env", f"FCORE_DB_POOL={os.environ.get('FCORE_DB_POOL', '1')}",
            "--log-level", level,
            *(["--access-logfile", "-"] if level in ("info", "debug") else [])]


def worker_argv(*, concurrency: int) -> list[str]:
    argv = [_program("celery"), "-A", "fcore", "worker", "-l", log_level(),
            "-c", str(concurrency)]
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # the file-system transport has no broadcast: no gossip, no mingle
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--", f"broker.transport={QUICK_STOP_TRANSPORT}"]
    return argv


def beat_argv() -> list[str]:
    return [_program("celery"), "-A", "fcore", "beat", "-l", log_level(),
            "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME]


def signing_key_register(command) -> None:
    """Put the configured checkpoint key in service before anything signs (audited); a
    database not migrated yet only warns (the worker signs nothing before it is)."""
    try:
        call_command("register_signing_key", stdout=command.stdout)
    except CommandError as exc:
        command.stderr.write(f"no checkpoint signing key: {exc}")
    except DatabaseError as exc:  # e.g. no tables yet: `fc migrate` comes first
        command.stderr.write(f"checkpoint signing key not registered ({exc})")


def exec_process(argv: list[str]) -> None:
    """Become the process (no parent in between): its signals, its exit status."""
    connections.close_all()  # the signing key's queries: the program opens its own
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
