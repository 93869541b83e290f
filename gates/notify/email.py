"""Gate emails: who gets them, the outbox rows, and sending one.

On `gate.opened` the members of the gate's approver group in the tenant who have an email
address are written to; on `gate.escalated` also the `escalate_to` group; on
`gate.resolved` the same people plus the person who started the run or requested the gate.
Whoever four-eyes keeps from deciding gets no opened/escalated mail. Mails for people who
may decide carry a one-click review link (`gates.notify.links`) minted for that recipient
when the mail is sent.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from fcore.actors import Actor, user_actor
from fcore.models import Membership
from fcore.rows import Rows

from ..models import DeliveryStatus, EmailNotification, Gate, GateStatus, Vote
from .links import link_token_make, link_url
from .webhooks import backoff_s

log = logging.getLogger("fcore.email")

SUBJECTS = {
    "gate.opened": "Approval needed: {workflow}, step {step} (gate {gate_id})",
    "gate.escalated": "Escalated, approval needed: {workflow}, step {step} (gate {gate_id})",
    "gate.resolved": "Gate {gate_id} {status}: {workflow}, step {step}",
}


def _members_sql(where: str) -> str:
    """The active members of a tenant with an email address, one row each (a person has
    one membership of a tenant), who also match `where`."""
    user, membership = get_user_model()._meta.db_table, Membership._meta.db_table
    return (f"SELECT {{columns}} FROM {user} u JOIN {membership} m ON m.user_id = u.id "
            f"WHERE m.tenant_id = %s AND u.is_active AND u.email <> '' AND {where}")


# Those in one of two groups (the same one twice for one group), and those of two
# usernames: read at every gate event (`fcore.rows`).
_IN_GROUPS = Rows(get_user_model(), _members_sql(
    f"EXISTS (SELECT 1 FROM {Membership.groups.through._meta.db_table} mg "
    f"JOIN {Group._meta.db_table} g ON g.id = mg.group_id "
    "WHERE mg.membership_id = m.id AND g.name IN (%s, %s))"), alias="u")
_NAMED = Rows(get_user_model(), _members_sql("u.username IN (%s, %s)"), alias="u")


def email_recipients(*, gate: Gate, run, event: str) -> list[tuple[object, bool]]:
    """(user, with_link) for everyone to write to about `event` on `gate`."""
    groups = [gate.approver_group, gate.approver_group]
    escalated = event == "gate.escalated" or (gate.resolution or {}).get("escalated")
    if escalated and gate.escalate_to:
        groups[1] = gate.escalate_to
    deciding = event != "gate.resolved"
    barred = {gate.requested_by, run.created_by}
    people = {}
    for user in _IN_GROUPS.fetch([gate.tenant_id, *groups]):
        if deciding and user_actor(user) in barred:
            continue
        people[user.pk] = (user, deciding)
    usernames = [Actor.parse(a).id for a in barred if a.startswith("user:")]
    if not deciding and usernames:
        for user in _NAMED.fetch([gate.tenant_id, *(usernames * 2)[:2]]):
            people.setdefault(user.pk, (user, False))
    return sorted(people.values(), key=lambda item: item[0].pk)


def email_notifications_create(*, gate: Gate, run, event: str) -> list[int]:
    """The outbox rows of one gate event; runs in the transaction of the gate change."""
    return [EmailNotification.objects.create(
        tenant_id=gate.tenant_id, gate=gate, event=event, user=user, email=user.email,
        with_link=with_link).id
        for user, with_link in email_recipients(gate=gate, run=run, event=event)]


def email_render(notification: EmailNotification, gate: Gate) -> tuple[str, str]:
    """Subject and plain-text body; a review link only while the gate is open."""
    run = gate.run
    names = {"workflow": run.definition.name, "step": gate.step_id or "run",
             "gate_id": gate.id, "status": gate.status}
    link = None
    if notification.with_link and gate.status == GateStatus.OPEN:
        token = link_token_make(gate_id=gate.id, user_id=notification.user_id)
        link = link_url(gate_id=gate.id, token=token)
    body = render_to_string("notify/gate_email.txt", {
        "event": notification.event, "gate": gate, "run": run, "user": notification.user,
        "link": link, "link_hours": settings.FCORE_GATE_LINK_MAX_AGE_S // 3600,
        "approvals": gate.approvals.filter(decision=Vote.APPROVE).count(),
        "run_url": f"{settings.FCORE_PUBLIC_URL}/console/runs/{run.run_id}/",
        **names,
    })
    return SUBJECTS[notification.event].format(**names), body


def email_send(notification_id: int) -> int | None:
    """Send one pending notification. Returns seconds to wait before retrying a failed
    send, or None when done. Sent mail is never sent again (row lock + status)."""
    with transaction.atomic():
        notification = (EmailNotification.objects.select_for_update()
                        .filter(pk=notification_id).first())
        if notification is None or notification.status != DeliveryStatus.PENDING:
            return None
        gate = Gate.objects.select_related("run__definition", "step_run").get(
            pk=notification.gate_id)
        subject, body = email_render(notification, gate)
        notification.attempts += 1
        wait = None
        try:
            send_mail(subject, body, None, [notification.email], fail_silently=False)
        except Exception as exc:  # SMTP, socket, backend errors: log and retry
            notification.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            if notification.attempts >= settings.FCORE_EMAIL_MAX_ATTEMPTS:
                notification.status = DeliveryStatus.FAILED
            else:
                wait = backoff_s(notification.attempts)
            log.warning("gate email %s to %s failed: %s", notification.id,
                        notification.email, notification.last_error)
        else:
            notification.status = DeliveryStatus.DELIVERED
            notification.sent_at = timezone.now()
            notification.last_error = ""
        notification.save()
    return wait


def emails_due(*, now=None, older_than_s: int = 60) -> list[int]:
    """Pending notifications whose task was lost (older than `older_than_s`)."""
    cutoff = (now or timezone.now()) - timezone.timedelta(seconds=older_than_s)
    return list(EmailNotification.objects.filter(status=DeliveryStatus.PENDING,
                                                 created_at__lte=cutoff)
                .values_list("id", flat=True)[:500])
