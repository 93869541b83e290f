from django.apps import AppConfig


class FcoreConfig(AppConfig):
    name = "fcore"
    verbose_name = "Federation Core"
