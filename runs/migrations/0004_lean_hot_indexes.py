"""Run rows: no LIKE index on status (a plain one instead) and no tenant index of its own
(the (tenant, status, -created_at) and (tenant, idempotency_key) indexes begin with it)."""

import django.db.models.deletion
import django_fsm
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('fcore', '0002_groups'),
        ('runs', '0003_lean_indexes'),
    ]

    operations = [
        migrations.AlterField(
            model_name='run',
            name='status',
            field=django_fsm.FSMField(choices=[('pending', 'Pending'), ('running', 'Running'), ('paused', 'Paused'), ('completed', 'Completed'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='pending', max_length=50, protected=True),
        ),
        migrations.AlterField(
            model_name='run',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='fcore.tenant'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['status'], name='run_status'),
        ),
    ]
