"""Webhook signing secrets encrypted at rest (`fcore.secret_box`).

Forward: every clear-text `secret` is encrypted into `secret_encrypted`, then `secret` is
dropped. Backward: the tokens are decrypted into `secret` again, which needs the same
`FCORE_SECRET_ENCRYPTION_KEY` (or SECRET_KEY, when it is unset) as the forward run; with
another key the reverse stops at the first token it cannot open and changes nothing.
"""

from django.db import migrations, models

from fcore.secret_box import secret_open, secret_seal


def encrypt_secrets(apps, schema_editor):
    endpoints = apps.get_model("gates", "WebhookEndpoint")
    for endpoint in endpoints.objects.only("id", "secret"):
        endpoints.objects.filter(pk=endpoint.pk).update(
            secret_encrypted=secret_seal(endpoint.secret))


def decrypt_secrets(apps, schema_editor):
    endpoints = apps.get_model("gates", "WebhookEndpoint")
    for endpoint in endpoints.objects.only("id", "secret_encrypted"):
        endpoints.objects.filter(pk=endpoint.pk).update(
            secret=secret_open(endpoint.secret_encrypted))


class Migration(migrations.Migration):

    dependencies = [
        ("gates", "0004_gate_requested_by_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="secret_encrypted",
            field=models.TextField(default="", editable=False),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        # a default, so that the reverse can add the column back to rows that exist
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=models.CharField(default="", editable=False, max_length=128),
        ),
        migrations.RemoveField(
            model_name="webhookendpoint",
            name="secret",
        ),
    ]
