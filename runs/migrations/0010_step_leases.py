# One live lease per external step (DESIGN §12).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0008_schedule'),
    ]

    operations = [
        migrations.CreateModel(
            name='StepLease',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('attempt', models.PositiveIntegerField()),
                ('token_hash', models.CharField(max_length=64)),
                ('holder', models.CharField(max_length=200)),
                ('lease_s', models.PositiveIntegerField()),
                ('claimed_at', models.DateTimeField()),
                ('expires_at', models.DateTimeField(db_index=True)),
                ('run', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='runs.run')),
                ('step', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='lease', to='runs.steprun')),
            ],
        ),
    ]
