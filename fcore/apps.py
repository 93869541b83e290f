from django.apps import AppConfig


class FcoreConfig(AppConfig):
    name = "fcore"
    verbose_name = "Federation Core"

    def ready(self):
        from . import checks, schema  # noqa: F401  (register system checks, the OpenAPI auth)
