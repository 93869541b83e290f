"""Background verification of a tenant's audit trail.

`GET /workflows/audit/verify` walks every chain inside the web request, which a trail of a
few million events takes longer than a web time-out to do. `audit_verification_request`
instead records a pending `AuditVerification` and, once that commits, enqueues
`audit.tasks.verify_tenant`; the task claims the row (pending → running, a compare-and-set,
so a task delivered twice runs the walk once), walks with `audit.verify.audit_verify`, and
records the report or the error. One verification per tenant is in progress at a time: a
request while one is pending or running gets that one (a pending one is enqueued again, in
case its task was lost: the claim makes that harmless). A running one whose worker died is
given up after `FCORE_AUDIT_VERIFY_STALE_S` and the next request starts afresh.

Verifying changes nothing that is audited (it only reads the chains), so it appends no
audit event; the rows are its own record of who asked when, and what was found.
"""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fcore.models import Tenant

from .models import AuditVerification, VerificationStatus
from .verify import audit_verify

# Sent by name (audit.tasks registers it), so this module does not import its task.
VERIFY_TASK = "audit.tasks.verify_tenant"

log = logging.getLogger("fcore.audit")

IN_PROGRESS = (VerificationStatus.PENDING, VerificationStatus.RUNNING)


def _give_up_stale(tenant_id: int, now) -> None:
    """Fail the tenant's verifications in progress for longer than the stale limit."""
    cutoff = now - timedelta(seconds=settings.FCORE_AUDIT_VERIFY_STALE_S)
    AuditVerification.objects.filter(
        tenant_id=tenant_id, status__in=IN_PROGRESS, requested_at__lt=cutoff,
    ).update(status=VerificationStatus.FAILED, finished_at=now,
             error="given up: no worker finished it in time")


def _send(verification_id: int) -> None:
    current_app.tasks[VERIFY_TASK].delay(verification_id)


def audit_verification_request(*, tenant_id: int, actor: str) -> tuple[AuditVerification, bool]:
    """Start a background verification of the tenant's chains (or return the one in
    progress). Returns (verification, created)."""
    with transaction.atomic():
        now = timezone.now()
        _give_up_stale(tenant_id, now)
        # the tenant row serialises concurrent requests of one tenant
        Tenant.objects.select_for_update().filter(pk=tenant_id).first()
        current = (AuditVerification.objects.filter(tenant_id=tenant_id,
                                                    status__in=IN_PROGRESS)
                   .order_by("-requested_at", "-id").first())
        if current is not None:
            if current.status == VerificationStatus.PENDING:  # its task may have been lost
                transaction.on_commit(lambda: _send(current.pk), robust=True)
            return current, False
        verification = AuditVerification.objects.create(tenant_id=tenant_id,
                                                        requested_by=actor)
        transaction.on_commit(lambda: _send(verification.pk), robust=True)
    return verification, True


def audit_verification_run(verification_id: int) -> bool:
    """Claim a pending verification, walk the tenant's chains, record the outcome. False
    when there was nothing to claim (done already, or another worker has it)."""
    now = timezone.now()
    claimed = AuditVerification.objects.filter(
        pk=verification_id, status=VerificationStatus.PENDING,
    ).update(status=VerificationStatus.RUNNING, started_at=now)
    if not claimed:
        return False
    verification = AuditVerification.objects.get(pk=verification_id)
    try:
        # one process: a Celery pool process may not fork scan workers of its own
        report = audit_verify(tenant_ids=[verification.tenant_id], workers=1)
    except Exception as exc:  # recorded on the row, then logged
        fields = {"status": VerificationStatus.FAILED,
                  "error": f"{type(exc).__name__}: {exc}"[:1000]}
        log.exception("audit verification %s failed", verification_id)
    else:
        fields = {"status": VerificationStatus.DONE, "report": report.as_dict()}
    AuditVerification.objects.filter(pk=verification_id,
                                     status=VerificationStatus.RUNNING).update(
        finished_at=timezone.now(), **fields)
    return True


def audit_verifications_for_tenant(tenant_id: int):
    """The tenant's verifications, newest first."""
    return AuditVerification.objects.filter(tenant_id=tenant_id).order_by("-requested_at",
                                                                         "-id")
