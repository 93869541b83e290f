from django.apps import AppConfig


class FcoreConfig(AppConfig):
    name = "fcore"
    verbose_name = "Federation Core"

    def ready(self):
        from fcore.interfaces.api import schema  # noqa: F401  (the OpenAPI auth)

        from . import checks  # noqa: F401  (register system checks)
