"""Commands around notifications and break-glass: create_webhook, and what demo_seed sets."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command

from gates.models import WebhookEndpoint
from gates.webhook_endpoints import webhook_endpoint_secret

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_webhook_prints_the_secret_once(pt004):
    output = json.loads(run_command("create_webhook", "--tenant", "tenant_omega", "--name",
                                    "pager", "--url", "http://127.0.0.1:9000/fc",
                                    "--events", "gate.opened gate.resolved"))
    endpoint = WebhookEndpoint.objects.get(pk=output["id"])
    assert output["secret"] == webhook_endpoint_secret(endpoint)
    assert output["secret"].startswith("whsec_")
    assert output["events"] == ["gate.opened", "gate.resolved"] == endpoint.events


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "nope", "--url", "http://127.0.0.1/x"], "no tenant 'nope'"),
    (["--tenant", "tenant_omega", "--url", "https://example.com/x"], "url: host 'example.com'"),
    (["--tenant", "tenant_omega", "--url", "http://127.0.0.1/x", "--events", "gate.x"],
     "events: a non-empty list"),
])
def test_create_webhook_refuses(pt004, args, message):
    with pytest.raises(CommandError) as info:
        run_command("create_webhook", "--name", "x", *args)
    assert message in str(info.value)


def test_demo_people_have_addresses_and_otto_and_admin_may_break_glass(db, advance):
    with advance():
        run_command("demo_seed")
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["adam"].email == "adam@example.invalid"
    assert users["otto"].has_perm("gates.override_gate")
    assert users["admin"].has_perm("gates.override_gate")
    assert not users["adam"].has_perm("gates.override_gate")
    assert any("adam@example.invalid" in m.to for m in mail.outbox)
