"""Retries (counted attempts after a backoff, one receipt per step) and time-outs (the
sweeper fails an external attempt past its deadline; an internal step enforces its own).
After every test, every audit stream still verifies."""

import random
import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.verify import audit_verify
from fcore.errors import Conflict
from fcore.models import Tenant
from runs import engine
from runs.definitions import definition_publish
from runs.engine import retry_delay, runs_sweep
from runs.models import Run, RunStatus, StepRun, StepStatus
from runs.services import run_create, step_report
from runs.verification import run_receipts_verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_streams_verify")]

FLAKY = "python:runs.examples.flaky"


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(slug="tenant_retries", name="Retries")


def start(tenant, advance, steps, *, input=None) -> Run:
    definition_publish(tenant=tenant, name="wf", steps=steps, actor="user:priya")
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input=input or {},
                            actor="user:olivia")
    return Run.objects.get(pk=run.pk)


def step(run, step_id) -> StepRun:
    return StepRun.objects.get(run=run, step_id=step_id)


def trail(run, step_id) -> list[tuple[str, int]]:
    """(code, attempt) of the step's FC-STEP-* events, in stream order."""
    return [(e.code, e.data["attempt"]) for e in AuditEvent.objects.filter(
        stream__name=run.stream_name, code__startswith="FC-STEP-00").order_by("seq")
        if e.data.get("step_id") == step_id]


def events(run, code) -> list[dict]:
    return [e.data for e in AuditEvent.objects.filter(stream__name=run.stream_name, code=code)
            .order_by("seq")]


# --- retries -------------------------------------------------------------------------------

def test_a_flaky_step_succeeds_on_its_second_attempt_with_one_receipt(tenant, advance):
    run = start(tenant, advance, [
        {"id": "a", "type": "noop"},
        {"id": "b", "type": FLAKY, "retry": {"max_attempts": 3, "backoff": 0}},
        {"id": "c", "type": "noop"}])
    assert run.status == RunStatus.COMPLETED, run.status_reason
    b = step(run, "b")
    assert (b.status, b.attempt, b.output) == (StepStatus.SUCCEEDED, 2, {"attempt": 2})
    assert trail(run, "b") == [("FC-STEP-001", 1), ("FC-STEP-003", 1), ("FC-STEP-004", 2),
                               ("FC-STEP-001", 2), ("FC-STEP-002", 2)]
    failed, = [d for d in events(run, "FC-STEP-003") if d["step_id"] == "b"]
    assert failed["error"]["code"] == "flaky" and failed["receipt_hash"] is None
    scheduled, = events(run, "FC-STEP-004")
    assert (scheduled["failed_attempt"], scheduled["attempt"], scheduled["max_attempts"]) == (
        1, 2, 3)
    assert scheduled["delay_s"] == 0 and scheduled["error"]["code"] == "flaky"
    assert [(d["step_id"], d["attempt"]) for d in events(run, "FC-POL-001")] == [
        ("a", 1), ("b", 1), ("b", 2), ("c", 1)]
    # the retried attempt does not extend the receipt chain: one receipt per step
    a, c = step(run, "a"), step(run, "c")
    assert [s.receipt_seq for s in (a, b, c)] == [1, 2, 3]
    assert b.prev_receipt_hash == a.receipt_hash and c.prev_receipt_hash == b.receipt_hash
    report = run_receipts_verify(run)
    assert report["verified"] is True, report["failures"]
    assert [(r["step_id"], r["attempt"]) for r in report["receipts"]] == [
        ("a", 1), ("b", 2), ("c", 1)]
    chain = audit_verify(stream=run.stream_name, checkpoints=False)
    assert chain.ok and chain.events == AuditEvent.objects.filter(
        stream__name=run.stream_name).count()


def test_exhausted_attempts_fail_the_run_with_the_last_error(tenant, advance):
    run = start(tenant, advance, [
        {"id": "b", "type": FLAKY, "retry": {"max_attempts": 3, "backoff": 0}},
        {"id": "c", "type": "noop"}], input={"succeed_on_attempt": 9})
    b = step(run, "b")
    assert run.status == RunStatus.FAILED and run.status_reason == "step b failed"
    assert (b.status, b.attempt, b.error["code"]) == (StepStatus.FAILED, 3, "flaky")
    assert step(run, "c").status == StepStatus.CANCELLED
    assert [code for code, _ in trail(run, "b")].count("FC-STEP-004") == 2
    last_failure = [d for d in events(run, "FC-STEP-003") if d["step_id"] == "b"][-1]
    assert last_failure["attempt"] == 3 and last_failure["receipt_hash"] == b.receipt_hash
    assert b.receipt_seq == 1  # the final failure gets the step's one receipt
    assert run_receipts_verify(run)["verified"] is True


@pytest.mark.parametrize(("backoff", "max_backoff", "attempt"), [
    (1, 60, 1), (1, 60, 2), (2, 60, 4), (2, 10, 4), (2, 10, 12), (0.5, 0.5, 3), (0, 60, 5)])
def test_retry_delay_is_capped_exponential_with_jitter_in_the_upper_half(backoff, max_backoff,
                                                                        attempt):
    random.seed(attempt)
    ceiling = min(max_backoff, backoff * 2 ** (attempt - 1))
    retry = {"max_attempts": 20, "backoff": backoff, "max_backoff": max_backoff}
    samples = [retry_delay(retry, attempt) for _ in range(2000)]
    assert all(ceiling / 2 <= s <= ceiling for s in samples)
    if ceiling:  # spread over the whole upper half, not a constant
        assert min(samples) < ceiling * 0.55 and max(samples) > ceiling * 0.95
    else:
        assert set(samples) == {0}


def test_a_pending_retry_is_not_started_before_it_is_due(tenant, advance):
    run = start(tenant, advance, [{"id": "b", "type": FLAKY,
                                   "retry": {"max_attempts": 2, "backoff": 60}}])
    b = step(run, "b")
    assert (b.status, b.attempt) == (StepStatus.PENDING, 2)
    now = timezone.now()
    assert now + timedelta(seconds=29) < b.not_before <= now + timedelta(seconds=60)
    (scheduled,) = events(run, "FC-STEP-004")  # backoff 60 s, jitter: 30 s to 60 s
    assert 30 <= scheduled["delay_s"] <= 60
    assert datetime.fromisoformat(scheduled["not_before"]) == b.not_before
    before = trail(run, "b")
    with advance():
        engine.run_advance(run.run_id)
        engine.run_advance(run.run_id)
    assert trail(run, "b") == before and step(run, "b").status == StepStatus.PENDING
    StepRun.objects.filter(pk=b.pk).update(not_before=now - timedelta(seconds=1))
    with advance():
        engine.run_advance(run.run_id)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert trail(run, "b")[-2:] == [("FC-STEP-001", 2), ("FC-STEP-002", 2)]


# --- time-outs ------------------------------------------------------------------------------

def test_an_unreported_external_step_times_out_and_fails_the_run(tenant, advance):
    run = start(tenant, advance, [{"id": "ext", "type": "external", "timeout_s": 60},
                                  {"id": "after", "type": "noop"}])
    ext = step(run, "ext")
    assert ext.status == StepStatus.RUNNING
    assert ext.deadline_at == ext.started_at + timedelta(seconds=60)
    with advance():
        assert runs_sweep(now=timezone.now() + timedelta(seconds=30)).timed_out == 0
    assert step(run, "ext").status == StepStatus.RUNNING
    with advance():
        sweep = runs_sweep(now=timezone.now() + timedelta(seconds=61))
    assert sweep.timed_out == 1
    run.refresh_from_db()
    ext = step(run, "ext")
    assert run.status == RunStatus.FAILED
    assert ext.status == StepStatus.FAILED and ext.error["code"] == "timeout"
    assert step(run, "after").status == StepStatus.CANCELLED
    failed, = events(run, "FC-STEP-003")
    assert failed["error"]["code"] == "timeout"
    with advance():  # nothing left to time out
        assert runs_sweep(now=timezone.now() + timedelta(seconds=120)).timed_out == 0


def test_a_timed_out_external_step_with_retry_gets_a_new_attempt(tenant, advance):
    run = start(tenant, advance, [{"id": "ext", "type": "external", "timeout_s": 60,
                                   "retry": {"max_attempts": 2, "backoff": 0}}])
    with advance():
        assert runs_sweep(now=timezone.now() + timedelta(seconds=61)).timed_out == 1
    ext = step(run, "ext")
    assert (ext.status, ext.attempt) == (StepStatus.RUNNING, 2)
    assert ext.deadline_at > timezone.now() + timedelta(seconds=50)
    assert trail(run, "ext") == [("FC-STEP-001", 1), ("FC-STEP-003", 1), ("FC-STEP-004", 2),
                                 ("FC-STEP-001", 2)]
    assert events(run, "FC-STEP-004")[0]["error"]["code"] == "timeout"
    with pytest.raises(Conflict) as info, advance():  # the first attempt's late report
        step_report(tenant=tenant, run_id=run.run_id, step_id="ext", actor="client:x",
                    status="succeeded", output={}, attempt=1)
    assert info.value.code == "stale_attempt"
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id="ext", actor="client:x",
                    status="succeeded", output={"done": 1}, attempt=2)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and run.output == {"ext": {"done": 1}}


def test_an_internal_step_longer_than_its_timeout_fails_with_timeout(tenant, advance):
    began = time.monotonic()
    run = start(tenant, advance, [{"id": "nap", "type": "sleep", "seconds": 0.5,
                                   "timeout_s": 0.1}])
    assert time.monotonic() - began < 0.45  # stopped at its deadline, not after 0.5 s
    nap = step(run, "nap")
    assert run.status == RunStatus.FAILED and run.status_reason == "step nap failed"
    assert nap.error["code"] == "timeout" and nap.output is None


def test_an_internal_time_out_is_retried_like_any_failure(tenant, advance):
    run = start(tenant, advance, [{"id": "nap", "type": "sleep", "seconds": 0.3,
                                   "timeout_s": 0.05, "retry": {"max_attempts": 2,
                                                                "backoff": 0}}])
    nap = step(run, "nap")
    assert run.status == RunStatus.FAILED
    assert (nap.attempt, nap.error["code"]) == (2, "timeout")
    assert [d["error"]["code"] for d in events(run, "FC-STEP-003")] == ["timeout", "timeout"]
    assert [(d["failed_attempt"], d["attempt"]) for d in events(run, "FC-STEP-004")] == [(1, 2)]
