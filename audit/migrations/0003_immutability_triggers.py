"""The database refuses UPDATE, DELETE and TRUNCATE of audit events (audit.immutability)."""

from django.db import migrations

from audit import immutability


def install(apps, schema_editor):
    immutability.install(schema_editor, schema_editor.connection.vendor)


def drop(apps, schema_editor):
    immutability.drop(schema_editor, schema_editor.connection.vendor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_initial")]
    operations = [migrations.RunPython(install, drop)]
