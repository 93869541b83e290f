"""The web verify as a background job (issue 22 item 7): POST /workflows/audit/verify
starts a Celery job that records its report in `AuditVerification`; GET …/latest and
…/{id} show it; the inline GET answers as before."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit import verifications
from audit.immutability import triggers_suspended
from audit.models import AuditEvent, AuditVerification, VerificationStatus
from audit.verifications import audit_verification_request, audit_verification_run

pytestmark = pytest.mark.django_db

VERIFY = "/workflows/audit/verify"


def test_post_starts_a_job_whose_report_matches_the_inline_walk(api, completed_run):
    started = api.post(VERIFY)
    assert started.status_code == 202, started.json()
    job = started.json()
    assert started["Location"] == f"{VERIFY}/{job['verification_id']}"
    assert job["requested_by"] == "client:harness"
    latest = api.get(f"{VERIFY}/latest")
    assert latest.status_code == 200
    body = latest.json()
    assert body["verification_id"] == job["verification_id"] and body["status"] == "done"
    assert body["started_at"] and body["finished_at"] and body["error"] == ""
    inline = api.get(VERIFY).json()
    assert body["report"] == inline and inline["ok"] is True
    assert inline["events"] == AuditEvent.objects.filter(tenant__slug=api.tenant).count()
    assert api.get(started["Location"]).json() == body


def test_a_broken_chain_is_reported_by_the_job_as_by_the_inline_walk(api, completed_run):
    event = AuditEvent.objects.filter(stream__name=f"run/{completed_run}", seq=3).get()
    with triggers_suspended(connection), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = 'user:mallory' WHERE id = %s",
                       [event.id])
    api.post(VERIFY)
    body = api.get(f"{VERIFY}/latest").json()
    assert body["status"] == "done" and body["report"]["ok"] is False
    assert body["report"]["failures"] == api.get(VERIFY).json()["failures"]
    assert body["report"]["failures"][0]["problem"] == "hash does not match content"


def test_one_job_at_a_time_and_a_task_delivered_twice_walks_once(pt004,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as enqueued:
        first, created = audit_verification_request(tenant_id=pt004.id, actor="user:a")
        again, created_again = audit_verification_request(tenant_id=pt004.id, actor="user:b")
    assert created and not created_again and again.pk == first.pk
    assert len(enqueued) == 2  # the pending one is enqueued again, in case its task was lost
    assert audit_verification_run(first.pk) is True
    assert audit_verification_run(first.pk) is False  # the second delivery finds it claimed
    done = AuditVerification.objects.get(pk=first.pk)
    assert done.status == VerificationStatus.DONE and done.report["ok"] is True
    with django_capture_on_commit_callbacks():
        later, created_later = audit_verification_request(tenant_id=pt004.id, actor="user:a")
    assert created_later and later.pk != first.pk  # a finished one is not in progress


def test_a_job_whose_worker_died_is_given_up_for_a_new_one(pt004, settings,
                                                           django_capture_on_commit_callbacks):
    settings.FCORE_AUDIT_VERIFY_STALE_S = 60
    with django_capture_on_commit_callbacks():
        lost, _ = audit_verification_request(tenant_id=pt004.id, actor="user:a")
    AuditVerification.objects.filter(pk=lost.pk).update(
        status=VerificationStatus.RUNNING, requested_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks():
        fresh, created = audit_verification_request(tenant_id=pt004.id, actor="user:a")
    assert created and fresh.pk != lost.pk
    lost.refresh_from_db()
    assert lost.status == VerificationStatus.FAILED and "given up" in lost.error


def test_a_walk_that_cannot_finish_is_recorded_as_failed(api, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(verifications, "audit_verify", broken)
    api.post(VERIFY)
    body = api.get(f"{VERIFY}/latest").json()
    assert body["status"] == "failed" and body["report"] is None
    assert body["error"] == "RuntimeError: database went away"


def test_no_job_yet_another_tenants_job_and_a_missing_scope(api, other_tenant,
                                                            django_capture_on_commit_callbacks):
    missing = api.get(f"{VERIFY}/latest")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    with django_capture_on_commit_callbacks():
        theirs, _ = audit_verification_request(tenant_id=other_tenant.id, actor="user:s")
    assert api.get(f"{VERIFY}/{theirs.pk}").status_code == 404
    assert api.get(f"{VERIFY}/latest").status_code == 404
    assert api.get(f"{VERIFY}/nope").status_code == 404
    reader = api.as_sub("reader", scope="runs:read")
    assert reader.post(VERIFY).status_code == 403
    assert reader.get(f"{VERIFY}/latest").status_code == 403
    assert AuditVerification.objects.filter(tenant__slug=api.tenant).count() == 0
