"""Gate emails and their one-click links (PT-005 item 8): who is written to, what the link
allows, and that opening a link (GET) changes nothing."""

import re
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import pytest
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from fcore.members import member_set
from gates.models import Approval, DeliveryStatus, EmailNotification, Gate, GateLinkUse
from gates.notify.email import email_send
from gates.notify.links import link_token_make
from runs.models import RunStatus
from runs.services import gates_expire_due, run_create, run_request_gate

pytestmark = pytest.mark.django_db

PASSWORD = "email-test-pass"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.FCORE_PUBLIC_URL = "https://fc.example.invalid"


@pytest.fixture
def people(pt004):
    for username, groups, email in [
        ("olivia", ["operators"], "olivia@example.invalid"),
        ("adam", ["approvers"], "adam@example.invalid"),
        ("amira", ["approvers"], "amira@example.invalid"),
        ("otto", ["operators", "approvers"], "otto@example.invalid"),
        ("quiet", ["approvers"], ""),
        ("priya", ["policy-admins"], "priya@example.invalid"),
    ]:
        member_set(tenant=pt004, username=username, groups=groups, password=PASSWORD,
                   email=email)
    return pt004


def start_payment(tenant, advance, actor="user:otto"):
    with advance():
        run, _ = run_create(tenant=tenant, workflow="vendor_payment", actor=actor,
                            input={"amount": 1200, "vendor": "v-1"})
    return Gate.objects.get(run=run)


def sent_to(messages) -> list[str]:
    return sorted(address for m in messages for address in m.to)


def review_link(message) -> str:
    (url,) = re.findall(r"https://fc\.example\.invalid(/console/gates/\d+/review\?t=\S+)",
                        message.body)
    return url


def login(username) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def token_of(path: str) -> str:
    return unquote(urlsplit(path).query.split("t=", 1)[1])


# --- who is written to ---------------------------------------------------------------------

def test_an_opened_gate_mails_its_approvers_but_not_the_requester(people, advance):
    gate = start_payment(people, advance)  # otto started it: four-eyes keeps him out
    assert sent_to(mail.outbox) == ["adam@example.invalid", "amira@example.invalid"]
    message = mail.outbox[0]
    assert message.subject == f"Approval needed: vendor_payment, step sign_off (gate {gate.id})"
    assert "0 of 2 approvals" in message.body and "opening it decides nothing" in message.body
    assert f"/console/runs/{gate.run_id}/" in message.body
    assert review_link(message).startswith(f"/console/gates/{gate.id}/review?t=")
    notes = EmailNotification.objects.filter(gate=gate)
    assert {n.status for n in notes} == {DeliveryStatus.DELIVERED}
    assert all(n.with_link and n.sent_at for n in notes)


def test_escalation_mails_the_escalation_group_too(people, advance):
    with advance():
        run, _ = run_create(tenant=people, workflow="pt004_execution_spine",
                            actor="user:priya", input={"amount": 1})
    with advance():
        run_request_gate(tenant=people, run_id=run.run_id, actor="client:exec", reason="odd",
                         step_id="step_1", settings={"on_timeout": "escalate",
                                                     "escalate_to": "operators",
                                                     "expires_in": 60})
    mail.outbox.clear()
    with advance():
        gates_expire_due(now=timezone.now() + timedelta(seconds=120))
    assert sent_to(mail.outbox) == ["adam@example.invalid", "amira@example.invalid",
                                    "olivia@example.invalid", "otto@example.invalid"]
    assert all(m.subject.startswith("Escalated, approval needed") for m in mail.outbox)
    assert all("escalated to operators" in m.body for m in mail.outbox)


def test_a_resolution_mails_the_approvers_and_the_run_creator_without_links(people, advance):
    gate = start_payment(people, advance, actor="user:olivia")
    mail.outbox.clear()
    with advance():
        login("adam").post(f"/console/gates/{gate.id}/decide",
                           {"decision": "reject", "comment": "wrong vendor"})
    assert sent_to(mail.outbox) == ["adam@example.invalid", "amira@example.invalid",
                                    "olivia@example.invalid", "otto@example.invalid"]
    message = mail.outbox[0]
    assert message.subject == f"Gate {gate.id} rejected: vendor_payment, step sign_off"
    assert "by user:adam (wrong vendor)" in message.body
    assert "/review?t=" not in message.body


def test_a_failing_mail_backend_is_retried_then_given_up(people, advance, settings):
    settings.EMAIL_BACKEND = "tests.gates.test_email_links.BrokenBackend"
    settings.FCORE_WEBHOOK_BACKOFF_S = 0
    gate = start_payment(people, advance)
    notes = list(EmailNotification.objects.filter(gate=gate))
    assert len(notes) == 2
    assert all(n.status == DeliveryStatus.FAILED and n.attempts == 3 for n in notes)
    assert all(n.last_error == "ConnectionRefusedError: smtp down" for n in notes)
    assert mail.outbox == []


def test_a_mail_is_sent_once_however_often_its_task_runs(people, advance):
    gate = start_payment(people, advance)
    note = EmailNotification.objects.filter(gate=gate).first()
    count = len(mail.outbox)
    assert email_send(note.id) is None and email_send(note.id) is None
    assert len(mail.outbox) == count


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp down")


# --- the link ------------------------------------------------------------------------------

@pytest.fixture
def linked(people, advance):
    """A gate started by otto, and the link mailed to adam."""
    gate = start_payment(people, advance)
    (message,) = [m for m in mail.outbox if m.to == ["adam@example.invalid"]]
    return gate, review_link(message)


def snapshot(gate):
    gate.refresh_from_db()
    return (gate.status, Approval.objects.count(), GateLinkUse.objects.count(),
            AuditEvent.objects.count(), gate.resolution)


def test_opening_the_link_needs_sign_in_and_changes_nothing(linked):
    gate, link = linked
    before = snapshot(gate)
    anonymous = Client().get(link)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/console/login/?next=")
    page = login("adam").get(link)
    body = page.content.decode()
    assert page.status_code == 200
    assert f"Gate {gate.id}" in body and 'value="approve"' in body and 'value="reject"' in body
    assert f'action="/console/gates/{gate.id}/review"' in body and 'method="post"' in body
    assert f'name="t" value="{token_of(link)}"' in body
    login("adam").get(link)  # again: still nothing happens
    login("adam").head(link)
    assert snapshot(gate) == before


def test_the_link_decides_once_by_post(linked, django_capture_on_commit_callbacks):
    gate, link = linked
    client = login("adam")
    token = token_of(link)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/console/gates/{gate.id}/review",
                               {"t": token, "decision": "approve", "comment": "via mail"})
    assert response.status_code == 302
    assert response["Location"] == f"/console/runs/{gate.run_id}/"
    vote = Approval.objects.get(gate=gate)
    assert (vote.actor, vote.decision, vote.comment) == ("user:adam", "approve", "via mail")
    used = GateLinkUse.objects.get()
    assert used.gate_id == gate.id and used.user.username == "adam"
    again = client.post(f"/console/gates/{gate.id}/review", {"t": token, "decision": "approve"})
    assert again.status_code == 410 and b"already been used" in again.content
    assert client.get(link).status_code == 410
    assert Approval.objects.filter(gate=gate).count() == 1


def test_the_link_is_bound_to_its_recipient(linked):
    gate, link = linked
    before = snapshot(gate)
    page = login("amira").get(link)
    assert page.status_code == 403 and b"sent to someone else" in page.content
    post = login("amira").post(f"/console/gates/{gate.id}/review",
                               {"t": token_of(link), "decision": "approve"})
    assert post.status_code == 403
    assert snapshot(gate) == before


def test_a_refused_vote_leaves_the_link_unused(linked):
    gate, link = linked
    client = login("adam")
    response = client.post(f"/console/gates/{gate.id}/review",
                           {"t": token_of(link), "decision": "reject", "comment": ""},
                           follow=True)
    assert b"A comment is required to reject a gate." in response.content
    assert GateLinkUse.objects.count() == 0 and Approval.objects.count() == 0
    assert client.get(link).status_code == 200


def test_expired_tampered_and_foreign_links_are_refused(linked, monkeypatch):
    gate, link = linked
    client = login("adam")
    token = token_of(link)
    adam_id = client.session["_auth_user_id"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = client.get(f"/console/gates/{gate.id}/review", {"t": tampered})
    assert response.status_code == 400 and b"not valid" in response.content
    assert client.get(f"/console/gates/{gate.id}/review").status_code == 400
    other_gate = client.get(f"/console/gates/{gate.id + 1}/review", {"t": token})
    assert other_gate.status_code in (400, 404)
    monkeypatch.setattr(signing.TimestampSigner, "timestamp",
                        lambda self: signing.b62_encode(int(timezone.now().timestamp())
                                                        - 25 * 3600))
    old = link_token_make(gate_id=gate.id, user_id=int(adam_id))
    monkeypatch.undo()
    expired = client.get(f"/console/gates/{gate.id}/review", {"t": old})
    assert expired.status_code == 410 and b"expired" in expired.content
    post = client.post(f"/console/gates/{gate.id}/review", {"t": old, "decision": "approve"})
    assert post.status_code == 410
    assert Approval.objects.count() == 0 and GateLinkUse.objects.count() == 0


def test_the_link_page_respects_four_eyes_and_closed_gates(people, advance):
    gate = start_payment(people, advance)  # started by otto
    from django.contrib.auth import get_user_model

    otto = get_user_model().objects.get(username="otto")
    own = link_token_make(gate_id=gate.id, user_id=otto.pk)
    page = login("otto").get(f"/console/gates/{gate.id}/review", {"t": own})
    assert page.status_code == 200
    assert b"another approver must decide" in page.content and b'value="approve"' not in (
        page.content)
    post = login("otto").post(f"/console/gates/{gate.id}/review",
                              {"t": own, "decision": "approve"}, follow=True)
    assert b"another approver must decide" in post.content
    assert Approval.objects.count() == 0 and GateLinkUse.objects.count() == 0
    Gate.objects.filter(pk=gate.pk).update(status="cancelled")
    adam = get_user_model().objects.get(username="adam")
    closed = login("adam").get(f"/console/gates/{gate.id}/review",
                               {"t": link_token_make(gate_id=gate.id, user_id=adam.pk)})
    assert b"no longer open: it is cancelled" in closed.content
    assert gate.run.status == RunStatus.PAUSED
