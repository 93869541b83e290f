from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Workflow runs"

    def ready(self):
        # The engine sends its tasks by name (runs.engine.dispatch): they are registered
        # in every process, not only in workers that discover them.
        from audit.facts import facts_check_register

        from . import checks, tasks  # noqa: F401  (register system checks and tasks)
        from .bindings import run_facts_verify

        facts_check_register(run_facts_verify)  # audit_verify checks runs' rows too
