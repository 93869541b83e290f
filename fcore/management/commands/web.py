"""python manage.py web — the web server alone (gunicorn), as `serve` starts it.

One process of the Procfile's model (docs/operations.md, "Processes"): the command becomes
gunicorn (exec), so a process manager's SIGTERM reaches gunicorn itself.
"""

import os

from django.core.management.base import BaseCommand

from fcore.management.processes import exec_process, web_argv


class Command(BaseCommand):
    help = "Run the web server (gunicorn) on HOST:PORT, in this process."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--workers", type=int,
                            default=int(os.environ.get("FCORE_WEB_WORKERS", 2)),
                            help="gunicorn workers")

    def handle(self, *args, port, host, workers, **options):
        exec_process(web_argv(host=host, port=port, workers=workers))
