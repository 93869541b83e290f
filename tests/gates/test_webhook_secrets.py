"""Webhook signing secrets at rest: the database holds only a Fernet token under a key from
settings, deliveries are still signed with the secret, and the data migration encrypts
secrets stored in clear text before."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from fcore.secret_box import InvalidToken, secret_open, secret_seal
from gates.models import WebhookEndpoint
from gates.webhook_endpoints import webhook_endpoint_create, webhook_endpoint_secret

from .webhook_receiver import endpoint_for, open_gate, receiver_verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quick_retries")]

URL = "http://127.0.0.1:9/hooks"


def endpoint_row_text(endpoint_id: int) -> str:
    """Every column of the endpoint's row, as the database holds it (a dump would)."""
    table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [endpoint_id])
        return " ".join(str(value) for value in cursor.fetchone())


def test_the_database_holds_no_signing_secret_and_deliveries_still_verify(
        pt004, advance, receiver_factory):
    receiver = receiver_factory()
    endpoint, secret = endpoint_for(pt004, receiver)
    text = endpoint_row_text(endpoint.pk)
    assert secret not in text and secret.removeprefix("whsec_") not in text
    assert webhook_endpoint_secret(WebhookEndpoint.objects.get(pk=endpoint.pk)) == secret
    open_gate(pt004, advance)
    (_, headers, body), = receiver.requests
    assert receiver_verify(secret, headers, body)


def test_a_configured_key_encrypts_and_another_key_cannot_open(settings):
    settings.FCORE_SECRET_ENCRYPTION_KEY = Fernet.generate_key().decode()
    sealed = secret_seal("whsec_abc")
    assert "whsec_abc" not in sealed and secret_open(sealed) == "whsec_abc"
    settings.FCORE_SECRET_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(InvalidToken):
        secret_open(sealed)


def test_a_rotated_key_still_opens_tokens_of_the_previous_one(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FCORE_SECRET_ENCRYPTION_KEY = old
    sealed = secret_seal("whsec_abc")
    settings.FCORE_SECRET_ENCRYPTION_KEY = f"{new},{old}"
    assert secret_open(sealed) == "whsec_abc"
    settings.FCORE_SECRET_ENCRYPTION_KEY = new
    with pytest.raises(InvalidToken):
        secret_open(sealed)


def test_a_key_that_is_not_a_fernet_key_is_refused(settings):
    settings.FCORE_SECRET_ENCRYPTION_KEY = "not-a-key"
    with pytest.raises(ImproperlyConfigured, match="FCORE_SECRET_ENCRYPTION_KEY"):
        secret_seal("whsec_abc")


def test_without_a_configured_key_the_key_follows_secret_key(settings):
    settings.FCORE_SECRET_ENCRYPTION_KEY = ""
    sealed = secret_seal("whsec_abc")
    assert secret_open(sealed) == "whsec_abc"
    settings.SECRET_KEY = "another-secret-key-" * 3
    with pytest.raises(InvalidToken):
        secret_open(sealed)


# --- the data migration ----------------------------------------------------------------------

BEFORE = [("gates", "0004_gate_requested_by_key")]
AFTER = [("gates", "0005_webhookendpoint_secret_encrypted")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_clear_text_secrets_and_its_reverse_restores_them(pt004):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="pager", url=URL,
                                          actor="user:admin")
    try:
        old_apps = migrate(BEFORE)
        old_model = old_apps.get_model("gates", "WebhookEndpoint")
        old_model.objects.filter(pk=endpoint.pk).update(secret="whsec_clear")
        migrate(AFTER)
        assert "whsec_clear" not in endpoint_row_text(endpoint.pk)
        assert webhook_endpoint_secret(WebhookEndpoint.objects.get(pk=endpoint.pk)) == \
            "whsec_clear"
        old_apps = migrate(BEFORE)
        restored = old_apps.get_model("gates", "WebhookEndpoint").objects.get(pk=endpoint.pk)
        assert restored.secret == "whsec_clear"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
