from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        # `audit.verifications` sends its task by name: it is registered in every process.
        from . import tasks  # noqa: F401
