"""One-time secrets (an API client's, a webhook endpoint's signing secret) created in Django
admin are shown on the response page itself, once, and never travel through the messages
framework (its cookie is signed, not encrypted, and its session fallback is stored)."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages.storage import default_storage
from django.test import Client, RequestFactory

from fcore.clients import client_secret
from fcore.models import ApiClient
from gates.models import WebhookEndpoint
from gates.webhook_endpoints import webhook_endpoint_secret

pytestmark = pytest.mark.django_db


@pytest.fixture
def root() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.invalid", "pw")
    client = Client()
    client.force_login(user)
    return client


def stored_messages(client: Client) -> list[str]:
    """Every message the client's cookies and session still carry, read the way the next
    request would read them."""
    request = RequestFactory().get("/")
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    request.session = client.session
    return [str(message) for message in default_storage(request)]


def assert_shown_once(client: Client, response, secret: str) -> None:
    assert response.status_code == 200
    assert response.content.decode().count(secret) == 1
    assert "no-store" in response["Cache-Control"]
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert all(secret not in str(value) for value in client.session.values())
    assert all(secret not in message for message in stored_messages(client))


def test_a_new_api_clients_secret_is_on_the_response_page_only(pt004, root):
    response = root.post("/admin/fcore/apiclient/add/", {
        "tenant": pt004.pk, "name": "ci", "scopes": "runs:read", "active": "on"})
    client = ApiClient.objects.get(name="ci")
    secret = client_secret(client.secret_salt)
    assert_shown_once(root, response, secret)
    assert client.kid in response.content.decode()
    listing = root.get("/admin/fcore/apiclient/")
    assert listing.status_code == 200 and secret not in listing.content.decode()


def test_a_new_webhook_endpoints_secret_is_on_the_response_page_only(pt004, root):
    response = root.post("/admin/gates/webhookendpoint/add/", {
        "tenant": pt004.pk, "name": "pager", "url": "http://127.0.0.1:9000/fc",
        "events": json.dumps(["gate.opened"]), "active": "on"})
    endpoint = WebhookEndpoint.objects.get(name="pager")
    secret = webhook_endpoint_secret(endpoint)
    assert_shown_once(root, response, secret)
    change = root.get(f"/admin/gates/webhookendpoint/{endpoint.pk}/change/")
    assert change.status_code == 200 and secret not in change.content.decode()
