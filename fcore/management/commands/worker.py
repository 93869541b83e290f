"""python manage.py worker — one Celery worker, as `serve` starts it.

Registers the configured checkpoint signing key first (as `serve` does), then becomes
`celery -A fcore worker` (exec): a process manager's SIGTERM is Celery's warm shutdown.
"""

import os

from django.core.management.base import BaseCommand

from fcore.management.processes import exec_process, signing_key_register, worker_argv


class Command(BaseCommand):
    help = "Run a Celery worker (steps, notifications, checkpoints), in this process."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int,
                            default=int(os.environ.get("FCORE_WORKER_CONCURRENCY", 2)),
                            help="Celery processes")

    def handle(self, *args, concurrency, **options):
        signing_key_register(self)
        exec_process(worker_argv(concurrency=concurrency))
