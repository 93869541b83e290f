"""An API client's secret is not recoverable from a database dump alone: the row holds a
salt, and the secret is derived from it with FCORE_CLIENT_KEY, which lives outside the
database (DESIGN §3)."""

import pytest
from django.db import connection

from fcore.clients import api_client_create, client_secret
from fcore.models import ApiClient

pytestmark = pytest.mark.django_db


def row_text(client: ApiClient) -> str:
    table = connection.ops.quote_name(ApiClient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [client.pk])
        return " ".join(str(value) for value in cursor.fetchone())


def test_the_database_row_does_not_hold_the_secret_and_the_key_does(pt004, settings):
    client, secret = api_client_create(tenant=pt004, name="ci", scopes=["runs:read"],
                                       actor="user:admin")
    assert secret not in row_text(client)
    assert client_secret(client.secret_salt) == secret
    settings.FCORE_CLIENT_KEY = "another-client-key"
    assert client_secret(client.secret_salt) != secret
