from django.db import migrations, models
from django.db.models import Q

# The reasons the engine wrote when a gate paused a run, before the pause had a field.
GATE_PAUSE_REASONS = Q(status_reason__startswith="gate at ") | Q(
    status_reason__startswith="gate requested: ")


def mark_gate_pauses(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    Run.objects.filter(GATE_PAUSE_REASONS, status="paused").update(paused_for_gate=True)


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0004_lean_hot_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="paused_for_gate",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_gate_pauses, migrations.RunPython.noop),
    ]
