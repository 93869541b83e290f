from django.apps import AppConfig


class FcoreConfig(AppConfig):
    name = "fcore"
    verbose_name = "Federation Core"

    def ready(self):
        from . import schema  # noqa: F401  (registers the OpenAPI auth extension)
