"""Fewer index entries per append (every engine step appends three events and moves a head):
the event hash is no longer unique-indexed ((stream, seq) is unique, and every hash covers
its stream and seq); the stream head keeps no index on `updated_at`, so moving it is a HOT
update on PostgreSQL; the stream name is unique through a constraint, without the LIKE index
of a unique field. SQLite rebuilds the events table to drop the constraint, which drops its
triggers: they are put back."""

from django.db import migrations, models

from audit import immutability


def triggers_install(apps, schema_editor):
    immutability.install(schema_editor, schema_editor.connection.vendor)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0005_lean_indexes'),
        ('fcore', '0002_groups'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='auditevent',
            name='uniq_event_hash',
        ),
        migrations.RemoveIndex(
            model_name='auditstream',
            name='audit_audit_tenant__8a9ac9_idx',
        ),
        migrations.AlterField(
            model_name='auditstream',
            name='name',
            field=models.CharField(max_length=200),
        ),
        migrations.AddConstraint(
            model_name='auditstream',
            constraint=models.UniqueConstraint(fields=('name',), name='uniq_stream_name'),
        ),
        migrations.RunPython(triggers_install, migrations.RunPython.noop),
    ]
