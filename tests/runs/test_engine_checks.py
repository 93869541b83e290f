"""The engine's settings are checked at start (system checks), and gate services refuse to
run without their run's lock."""

import pytest
from django.core.checks import run_checks
from django.utils import timezone

from fcore.celery import app
from gates.models import Gate
from gates.services import gate_cancel
from runs.engine import run_lock, steps_of
from runs.engine.lock import step_changed
from runs.models import Run, StepRun
from runs.services import run_create

ENGINE_IDS = {"fcore.E010", "fcore.E011", "fcore.E012", "fcore.E013", "fcore.E014",
              "fcore.W010"}


def engine_findings() -> set[str]:
    return {m.id for m in run_checks() if m.id in ENGINE_IDS}


def test_the_shipped_settings_pass():
    assert engine_findings() == set()


@pytest.mark.parametrize(("setting", "value", "finding"), [
    ("CELERY_TASK_ACKS_LATE", False, "fcore.E011"),
    ("CELERY_TASK_REJECT_ON_WORKER_LOST", False, "fcore.E012"),
    ("FCORE_STEP_LEASE_S", 0, "fcore.E013"),
    ("FCORE_STEP_CHAIN_MAX", -1, "fcore.E014"),
    ("FCORE_STEP_MAX_REDELIVERIES", -1, "fcore.E014"),
    ("CELERY_WORKER_PREFETCH_MULTIPLIER", 4, "fcore.W010"),
])
def test_a_setting_the_engine_depends_on_is_refused(settings, setting, value, finding):
    setattr(settings, setting, value)
    assert engine_findings() == {finding}


def test_db_connections_closed_around_every_task_are_refused(monkeypatch):
    monkeypatch.delitem(app.conf, "CELERY_DB_REUSE_MAX")
    assert engine_findings() == {"fcore.E010"}


@pytest.mark.django_db
def test_gate_services_refuse_to_run_without_the_run_lock(pt004, advance):
    with advance():
        run, _ = run_create(tenant=pt004, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 1200, "vendor": "v-1"})
    gate = Gate.objects.get(run=run)
    run = Run.objects.get(pk=run.pk)
    with pytest.raises(RuntimeError, match="without its run lock"):
        gate_cancel(gate=gate, run=run, actor="user:otto", reason="no lock")
    gate.refresh_from_db()
    assert gate.status == "open"
    with run_lock(run.run_id) as locked:  # the same call under the lock goes through
        gate_cancel(gate=Gate.objects.select_for_update().get(pk=gate.pk), run=locked,
                    actor="user:otto", reason="locked")
    gate.refresh_from_db()
    assert gate.status == "cancelled"


@pytest.mark.django_db
def test_a_lock_refuses_a_step_change_without_an_audit_event(pt004, advance):
    """The chain's memo trusts an unmoved stream head to mean unchanged steps: a change
    of a step that records no event is refused, and nothing of it is written."""
    with advance():
        run, _ = run_create(tenant=pt004, workflow="vendor_payment", actor="user:olivia",
                            input={"amount": 1200, "vendor": "v-1"})
    before = {s.step_id: (s.status, s.not_before) for s in StepRun.objects.filter(run=run)}
    with pytest.raises(RuntimeError, match="without an audit event"):
        with run_lock(run.run_id) as locked:
            step = next(iter(steps_of(locked).values()))
            step.not_before = timezone.now()
            step_changed(locked, step)
    after = {s.step_id: (s.status, s.not_before) for s in StepRun.objects.filter(run=run)}
    assert after == before
