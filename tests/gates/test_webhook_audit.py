"""Webhook endpoints are administrative changes: every create, change and delete — through
the services, Django admin (one by one or the list's bulk delete) or create_webhook — lands
in the tenant's admin stream as FC-ADM-004 in the change's transaction, never with the
signing secret."""

import io
import json
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from audit.messages import event_message
from audit.models import AuditEvent
from audit.services import admin_stream_name
from audit.verify import audit_verify
from fcore.errors import BadRequest
from fcore.members import member_set
from gates import webhook_endpoints
from gates.models import DEFAULT_EVENTS, WebhookDelivery, WebhookEndpoint
from gates.webhook_endpoints import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_secret,
    webhook_endpoint_update,
    webhook_url_for_audit,
)

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9000/hooks/fc"
ADMIN = "/admin/gates/webhookendpoint/"
ACTOR = "user:ops_admin"


def adm_events(tenant) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug),
                                          code="FC-ADM-004").order_by("seq"))


def serialized(event: AuditEvent) -> str:
    """Everything an event holds and the API shows, as one string to search."""
    return json.dumps({"stream": event.stream.name, "seq": event.seq, "code": event.code,
                       "actor": event.actor, "at": event.at, "data": event.data,
                       "message": event_message(event.code, event.data),
                       "prev_hash": event.prev_hash, "hash": event.hash})


def assert_clean(tenant, *secrets):
    """The admin stream verifies and no event of it holds any of `secrets`."""
    report = audit_verify(tenant_ids=[tenant.id])
    assert report.ok, report.failures
    for event in AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug)):
        for secret in secrets:
            assert secret not in serialized(event)


def row(endpoint) -> dict:
    return WebhookEndpoint.objects.filter(pk=endpoint.pk).values(
        "name", "url", "events", "active", "secret_encrypted").first()


# --- services ------------------------------------------------------------------------------

def test_create_records_the_endpoint_without_its_secret(pt004):
    endpoint, secret = webhook_endpoint_create(tenant=pt004, name="pager", url=URL,
                                               events=["gate.opened"], actor=ACTOR)
    event, = adm_events(pt004)
    assert event.actor == ACTOR
    assert event.data == {"endpoint_id": endpoint.pk, "action": "created", "name": "pager",
                          "url": URL, "events": ["gate.opened"], "active": True}
    assert event_message(event.code, event.data) == "Webhook endpoint 'pager' created"
    assert endpoint.created_by == ACTOR and webhook_endpoint_secret(endpoint) == secret
    assert_clean(pt004, secret)


def test_create_may_start_inactive_in_the_same_event(pt004):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="later", url=URL, active=False,
                                          actor=ACTOR)
    assert row(endpoint)["active"] is False
    event, = adm_events(pt004)
    assert event.data["active"] is False and event.data["action"] == "created"


def test_update_records_only_the_fields_that_changed(pt004):
    endpoint, secret = webhook_endpoint_create(tenant=pt004, name="pager", url=URL,
                                               actor=ACTOR)
    sealed = row(endpoint)["secret_encrypted"]
    new_url = "http://localhost:9001/other"
    updated, changed = webhook_endpoint_update(endpoint=endpoint, url=new_url, active=False,
                                               events=["gate.resolved"], actor="user:olga")
    assert changed and (updated.url, updated.active) == (new_url, False)
    assert row(endpoint)["secret_encrypted"] == sealed  # the secret is never touched
    event = adm_events(pt004)[-1]
    assert event.actor == "user:olga"
    assert event.data == {
        "endpoint_id": endpoint.pk, "action": "changed", "name": "pager", "url": new_url,
        "events": ["gate.resolved"], "active": False,
        "changes": {"url": [URL, new_url], "active": [True, False],
                    "events": [["gate.opened", "gate.escalated", "gate.resolved"],
                               ["gate.resolved"]]}}
    assert event_message(event.code, event.data) == "Webhook endpoint 'pager' changed"
    assert_clean(pt004, secret)


def test_an_update_that_changes_nothing_records_nothing(pt004):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="pager", url=URL, actor=ACTOR)
    same, changed = webhook_endpoint_update(endpoint=endpoint, name=" pager ", url=URL,
                                            events=list(endpoint.events), active=True,
                                            actor=ACTOR)
    assert not changed and same.pk == endpoint.pk
    assert [e.data["action"] for e in adm_events(pt004)] == ["created"]


def test_an_invalid_update_changes_and_records_nothing(pt004):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="pager", url=URL, actor=ACTOR)
    before = row(endpoint)
    with pytest.raises(BadRequest) as info:
        webhook_endpoint_update(endpoint=endpoint, url="https://example.com/x",
                                events=["gate.exploded"], actor=ACTOR)
    assert set(info.value.context["errors"]) == {"url", "events"}
    assert row(endpoint) == before and len(adm_events(pt004)) == 1


def test_delete_records_what_was_deleted_and_its_delivery_log(pt004):
    endpoint, secret = webhook_endpoint_create(tenant=pt004, name="pager", url=URL,
                                               actor=ACTOR)
    assert endpoint.events == list(DEFAULT_EVENTS)  # the default: the gate events
    for _ in range(2):
        WebhookDelivery.objects.create(
            delivery_id=uuid.uuid4(), endpoint=endpoint, event="gate.opened",
            payload={}, next_attempt_at=timezone.now() + timedelta(hours=1))
    assert webhook_endpoint_delete(endpoint=endpoint, actor="user:olga")
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.exists()
    event = adm_events(pt004)[-1]
    assert event.actor == "user:olga"
    assert event.data == {"endpoint_id": endpoint.pk, "action": "deleted", "name": "pager",
                          "url": URL, "events": list(DEFAULT_EVENTS), "active": True,
                          "deliveries_deleted": 2}
    assert event_message(event.code, event.data) == "Webhook endpoint 'pager' deleted"
    # deleting what is already gone is nothing, not a second event
    assert webhook_endpoint_delete(endpoint=endpoint, actor=ACTOR) is False
    assert len(adm_events(pt004)) == 2
    assert_clean(pt004, secret)


def test_query_string_values_of_the_url_are_not_recorded(pt004):
    url = "http://127.0.0.1:9000/hooks?token=s3cr3t-t0ken&team=ops"
    endpoint, secret = webhook_endpoint_create(tenant=pt004, name="pager", url=url,
                                               actor=ACTOR)
    assert row(endpoint)["url"] == url  # deliveries still go to the real URL
    webhook_endpoint_update(endpoint=endpoint, url=url.replace("s3cr3t", "n3w"), actor=ACTOR)
    created, changed = adm_events(pt004)
    assert created.data["url"] == "http://127.0.0.1:9000/hooks?token=***&team=***"
    assert changed.data["changes"] == {"url": [created.data["url"], created.data["url"]]}
    assert_clean(pt004, secret, "s3cr3t-t0ken", "n3w-t0ken")


@pytest.mark.parametrize(("url", "recorded"), [
    (URL, URL),
    ("https://localhost/a?b=", "https://localhost/a?b=***"),
    ("https://localhost/a?x=1&x=2#frag", "https://localhost/a?x=***&x=***#frag"),
])
def test_webhook_url_for_audit(url, recorded):
    assert webhook_url_for_audit(url) == recorded


def test_the_create_webhook_command_is_audited(pt004):
    out = io.StringIO()
    call_command("create_webhook", "--tenant", "tenant_omega", "--name", "cli", "--url", URL,
                 "--actor", "system:cli", stdout=out)
    printed = json.loads(out.getvalue())
    event, = adm_events(pt004)
    assert event.actor == "system:cli" and event.data["endpoint_id"] == printed["id"]
    assert_clean(pt004, printed["secret"])


# --- the change and its event are one transaction ------------------------------------------

def failing_append(**kwargs):
    raise RuntimeError("audit stream unavailable")


@pytest.mark.django_db(transaction=True)
def test_a_failed_append_rolls_every_change_back(pt004):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="pager", url=URL, actor=ACTOR)
    before = row(endpoint)
    with mock.patch.object(webhook_endpoints, "audit_append", failing_append):
        with pytest.raises(RuntimeError):
            webhook_endpoint_create(tenant=pt004, name="ghost", url=URL, actor=ACTOR)
        with pytest.raises(RuntimeError):
            webhook_endpoint_update(endpoint=endpoint, url="http://localhost/x", active=False,
                                    actor=ACTOR)
        with pytest.raises(RuntimeError):
            webhook_endpoint_delete(endpoint=endpoint, actor=ACTOR)
    assert not WebhookEndpoint.objects.filter(name="ghost").exists()
    assert row(endpoint) == before
    assert [e.data["action"] for e in adm_events(pt004)] == ["created"]
    assert audit_verify(tenant_ids=[pt004.id]).ok


# --- Django admin --------------------------------------------------------------------------

@pytest.fixture
def root(pt004) -> Client:
    """A superuser who is a member of the tenant, signed in to admin."""
    member_set(tenant=pt004, username="root", groups=["policy-admins"])
    user = get_user_model().objects.get(username="root")
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def add_form(tenant, **overrides) -> dict:
    data = {"tenant": str(tenant.pk), "name": "pager", "url": URL,
            "events": json.dumps(["gate.opened"]), "active": "on"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def change_form(endpoint, **overrides) -> dict:
    data = {"name": endpoint.name, "url": endpoint.url, "events": json.dumps(endpoint.events),
            "active": "on" if endpoint.active else None}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_admin_add_is_audited_as_the_signed_in_person(pt004, root):
    response = root.post(f"{ADMIN}add/", add_form(pt004, active=None))
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(name="pager")
    secret = webhook_endpoint_secret(endpoint)
    assert secret in response.content.decode()
    assert endpoint.active is False and endpoint.created_by == "user:root"
    event, = adm_events(pt004)
    assert event.actor == "user:root"
    assert event.data == {"endpoint_id": endpoint.pk, "action": "created", "name": "pager",
                          "url": URL, "events": ["gate.opened"], "active": False}
    assert_clean(pt004, secret)


def test_admin_change_is_audited_with_the_diff_and_nothing_when_nothing_changed(pt004, root):
    endpoint, secret = webhook_endpoint_create(tenant=pt004, name="pager", url=URL,
                                               events=["gate.opened"], actor=ACTOR)
    url = f"{ADMIN}{endpoint.pk}/change/"
    page = root.get(url).content.decode()
    assert secret not in page

    response = root.post(url, change_form(endpoint, name="pager-2", active=None))
    assert response.status_code == 302, response.content.decode()[:2000]
    event = adm_events(pt004)[-1]
    assert event.actor == "user:root" and event.data["action"] == "changed"
    assert event.data["changes"] == {"name": ["pager", "pager-2"], "active": [True, False]}

    endpoint.refresh_from_db()
    response = root.post(url, change_form(endpoint), follow=True)
    assert response.status_code == 200
    assert "Nothing changed" in response.content.decode()
    assert len(adm_events(pt004)) == 2
    assert_clean(pt004, secret)


def test_admin_cannot_move_an_endpoint_to_another_tenant(pt004, other_tenant, root):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="pager", url=URL, actor=ACTOR)
    response = root.post(f"{ADMIN}{endpoint.pk}/change/",
                         change_form(endpoint, tenant=str(other_tenant.pk)))
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.tenant_id == pt004.pk
    assert adm_events(other_tenant) == [] and len(adm_events(pt004)) == 1


def test_admin_delete_is_audited(pt004, root):
    endpoint, secret = webhook_endpoint_create(tenant=pt004, name="pager", url=URL,
                                               actor=ACTOR)
    response = root.post(f"{ADMIN}{endpoint.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    event = adm_events(pt004)[-1]
    assert (event.actor, event.data["action"], event.data["endpoint_id"]) == (
        "user:root", "deleted", endpoint.pk)
    assert_clean(pt004, secret)


def test_admin_bulk_delete_audits_every_endpoint_in_its_own_tenant(pt004, other_tenant, root):
    made = [webhook_endpoint_create(tenant=tenant, name=name, url=URL, actor=ACTOR)
            for tenant, name in ((pt004, "a"), (pt004, "b"), (other_tenant, "c"))]
    response = root.post(ADMIN, {"action": "delete_selected", "post": "yes",
                                 "_selected_action": [str(e.pk) for e, _ in made]})
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    deleted = {e.data["endpoint_id"]: e for t in (pt004, other_tenant) for e in adm_events(t)
               if e.data["action"] == "deleted"}
    assert set(deleted) == {e.pk for e, _ in made}
    assert all(e.actor == "user:root" for e in deleted.values())
    assert [e.data["name"] for e in adm_events(other_tenant)] == ["c", "c"]
    assert_clean(pt004, *(s for _, s in made))
    assert_clean(other_tenant, *(s for _, s in made))


@pytest.mark.django_db(transaction=True)
def test_admin_changes_roll_back_when_the_append_fails(pt004, root):
    endpoint, _ = webhook_endpoint_create(tenant=pt004, name="pager", url=URL, actor=ACTOR)
    other, _ = webhook_endpoint_create(tenant=pt004, name="pager-b", url=URL, actor=ACTOR)
    before = row(endpoint)
    with mock.patch.object(webhook_endpoints, "audit_append", failing_append):
        with pytest.raises(RuntimeError):
            root.post(f"{ADMIN}{endpoint.pk}/change/", change_form(endpoint, name="renamed"))
        with pytest.raises(RuntimeError):
            root.post(f"{ADMIN}add/", add_form(pt004, name="ghost"))
        with pytest.raises(RuntimeError):
            root.post(ADMIN, {"action": "delete_selected", "post": "yes",
                              "_selected_action": [str(endpoint.pk), str(other.pk)]})
    assert row(endpoint) == before and WebhookEndpoint.objects.filter(pk=other.pk).exists()
    assert not WebhookEndpoint.objects.filter(name="ghost").exists()
    assert len(adm_events(pt004)) == 2
    assert audit_verify(tenant_ids=[pt004.id]).ok


@pytest.mark.django_db(transaction=True)
def test_admin_bulk_delete_is_all_or_none(pt004, root):
    made = [webhook_endpoint_create(tenant=pt004, name=name, url=URL, actor=ACTOR)[0]
            for name in ("a", "b")]
    real, calls = webhook_endpoints.audit_append, []

    def second_fails(**kwargs):
        calls.append(kwargs["data"]["name"])
        if len(calls) == 2:
            raise RuntimeError("audit stream unavailable")
        return real(**kwargs)

    with mock.patch.object(webhook_endpoints, "audit_append", second_fails):
        with pytest.raises(RuntimeError):
            root.post(ADMIN, {"action": "delete_selected", "post": "yes",
                              "_selected_action": [str(e.pk) for e in made]})
    assert len(calls) == 2  # the first delete and its event happened, then were rolled back
    assert WebhookEndpoint.objects.filter(pk__in=[e.pk for e in made]).count() == 2
    assert [e.data["action"] for e in adm_events(pt004)] == ["created", "created"]
    assert audit_verify(tenant_ids=[pt004.id]).ok
