from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Workflow runs"

    def ready(self):
        # The engine sends its tasks by name (runs.engine.dispatch): they are registered
        # in every process, not only in workers that discover them.
        from . import checks, tasks  # noqa: F401  (register system checks and tasks)
