"""The groups FC knows: approvers, operators, policy-admins, auditors."""

from django.db import migrations

GROUPS = ("approvers", "operators", "policy-admins", "auditors")


def create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in GROUPS:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("fcore", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
