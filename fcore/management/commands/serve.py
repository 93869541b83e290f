"""python manage.py serve — the web server, a Celery worker and the scheduler, together.

What `make run` ends with. Each part is its own process (gunicorn, `celery worker`,
`celery beat`), as in production; Ctrl-C stops them all. Steps never run inside a web
request: the worker executes them.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from fcore.management.commands.demo_seed import DEMO_PASSWORD, PEOPLE


class Command(BaseCommand):
    help = "Serve FC: gunicorn on PORT, one Celery worker and celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery processes")

    def handle(self, *args, port, host, workers, concurrency, **options):
        bin_dir = os.path.dirname(sys.executable)
        embedded = settings.CELERY_BROKER_URL.startswith("filesystem://")
        level = os.environ.get("FCORE_LOG_LEVEL", "warning").lower()
        worker = [os.path.join(bin_dir, "celery"), "-A", "fcore", "worker", "-l", level,
                  "-c", str(concurrency)]
        if embedded:  # the file-system transport has no broadcast: no gossip, no mingle
            worker += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        commands = {
            "web": [os.path.join(bin_dir, "gunicorn"), "fcore.wsgi", "-b", f"{host}:{port}",
                    "-w", str(workers), "--log-level", level,
                    *(["--access-logfile", "-"] if level in ("info", "debug") else [])],
            "worker": worker,
            "beat": [os.path.join(bin_dir, "celery"), "-A", "fcore", "beat", "-l", level,
                     "-s", str(settings.VAR_DIR / "celerybeat-schedule")],
        }
        # links in notifications point at this server unless FCORE_PUBLIC_URL says otherwise
        env = {**os.environ}
        env.setdefault("FCORE_PUBLIC_URL", f"http://{host}:{port}")
        procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
        self._banner(host, port)
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _banner(self, host, port):
        url = f"http://{host}:{port}"
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
    .venv/bin/python manage.py create_api_client --tenant tenant_omega --name harness \\
        --scopes "runs:read runs:write gates:request gates:resolve audit:read"
Then prove PT-004 end to end:
    .venv/bin/python manage.py proof --url {url} --kid <kid> --secret <secret>

Ctrl-C stops the web server, the worker and the scheduler.
""")
