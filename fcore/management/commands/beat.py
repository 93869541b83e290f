"""python manage.py beat — Celery's scheduler, as `serve` starts it: gate expiry, the run
sweeper, notification retries and checkpoint sealing (CELERY_BEAT_SCHEDULE). Exactly one
per deployment. Its schedule file is FCORE_VAR_DIR/celerybeat-schedule."""

from django.core.management.base import BaseCommand

from fcore.management.processes import beat_argv, exec_process


class Command(BaseCommand):
    help = "Run celery beat (the periodic tasks), in this process; one per deployment."

    def handle(self, *args, **options):
        exec_process(beat_argv())
