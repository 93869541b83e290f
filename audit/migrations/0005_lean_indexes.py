"""Indexes that another one covers are dropped (every engine write inserts events); the
hash stays unique through a constraint, without the LIKE index a unique field brings.
SQLite rebuilds the table to alter it, which drops its triggers: they are put back."""

import django.db.models.deletion
from django.db import migrations, models

from audit import immutability


def triggers_install(apps, schema_editor):
    immutability.install(schema_editor, schema_editor.connection.vendor)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0004_checkpoints'),
        ('fcore', '0002_groups'),
    ]

    operations = [
        migrations.AlterField(
            model_name='auditevent',
            name='hash',
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='stream',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='audit.auditstream'),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='fcore.tenant'),
        ),
        migrations.AddConstraint(
            model_name='auditevent',
            constraint=models.UniqueConstraint(fields=('hash',), name='uniq_event_hash'),
        ),
        migrations.RunPython(triggers_install, migrations.RunPython.noop),
    ]
