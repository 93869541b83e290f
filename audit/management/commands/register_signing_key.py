"""python manage.py register_signing_key — put the configured signing key in service."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from audit.keys import signing_key, signing_key_register


class Command(BaseCommand):
    help = ("Register the configured checkpoint signing key's public half and retire the "
            "others (FC-AUD-002 on every tenant's admin stream); nothing when it is in "
            "service already.")

    def handle(self, *args, **options):
        try:
            key = signing_key()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        changed = signing_key_register(key, actor="system:register_signing_key")
        state = "put in service" if changed else "already in service"
        self.stdout.write(f"signing key {key.key_id} {state}")
