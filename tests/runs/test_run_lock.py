"""What `runs.engine.run_lock` reads in one statement: the run and its stream's head row,
both locked, and the stamp of the tenant's policies, whose evaluation snapshots each process
keeps until the stamp moves (`gates.policies.versions.policies_enabled_at`)."""

import threading
import time

import pytest
from django.db import connection

from audit.models import AuditEvent
from audit.services import audit_append
from audit.verify import audit_verify
from fcore.models import Tenant
from gates.models import PolicyDecision
from gates.policies import policies_enabled_at, policies_stamp, policy_save
from runs.definitions import definition_publish
from runs.engine import run_lock
from runs.models import Run, RunStatus, StepRun
from runs.services import run_create, step_report

WORKFLOW = [{"id": "wait", "type": "external"}, {"id": "next", "type": "noop",
                                                 "after": ["wait"]}]


@pytest.fixture
def tenant(db):
    tenant = Tenant.objects.create(slug="tenant_lock", name="Lock")
    definition_publish(tenant=tenant, name="wf", steps=WORKFLOW, actor="user:priya")
    return tenant


def stamp(tenant) -> str:
    return policies_stamp(tenant.id)


def save(tenant, *, name="guard", when='step.id == "next"', effect="flag", **kw):
    return policy_save(tenant=tenant, name=name, actor="user:priya",
                       rules=[{"id": "r", "effect": effect, "when": when}], **kw)


def test_every_change_evaluation_sees_moves_the_stamp(tenant):
    seen = [stamp(tenant)]
    changes = [
        lambda: save(tenant),  # a new policy
        lambda: save(tenant, when='step.id == "wait"'),  # its rules
        lambda: save(tenant, when='step.id == "wait"', tier=3),  # its tier
        lambda: save(tenant, when='step.id == "wait"', tier=3, enabled=False),  # disabled
        lambda: save(tenant, when='step.id == "wait"', tier=3, enabled=True),  # enabled
        lambda: save(tenant, when='step.id == "wait"', tier=3,  # where it applies
                     applies_to={"workflows": ["wf"]}),
        lambda: save(tenant, name="second"),  # another policy
    ]
    for change in changes:
        _policy, changed = change()
        assert changed
        seen.append(stamp(tenant))
    assert len(set(seen)) == len(seen)


def test_another_tenants_change_does_not_move_the_stamp(tenant):
    before = stamp(tenant)
    other = Tenant.objects.create(slug="tenant_lock_other", name="Other")
    save(other)
    assert stamp(tenant) == before


def test_policies_kept_for_a_stamp_are_not_read_again(tenant, django_assert_num_queries):
    save(tenant)
    current = stamp(tenant)
    with django_assert_num_queries(1):
        first = policies_enabled_at(tenant.id, current)
    with django_assert_num_queries(0):
        assert policies_enabled_at(tenant.id, current) is first
    assert [(p.name, p.version) for p in first] == [("guard", 1)]
    save(tenant, effect="deny")
    moved_stamp = stamp(tenant)
    with django_assert_num_queries(1):
        moved = policies_enabled_at(tenant.id, moved_stamp)
    assert [(p.name, p.version, p.rules[0]["effect"]) for p in moved] == [("guard", 2, "deny")]


def test_a_policy_saved_while_a_run_waits_decides_its_next_step(tenant, advance):
    """This process decided the run's first step with the policies it keeps; a policy
    saved afterwards must decide the next step, not the kept snapshots."""
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    policy, _ = save(tenant, effect="deny")
    with advance():
        step_report(tenant=tenant, run_id=run.run_id, step_id="wait", actor="client:x",
                    status="succeeded", output={})
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    decision = PolicyDecision.objects.get(step_run__run=run, step_run__step_id="next")
    assert (decision.decision, decision.policy_id, decision.policy_version) == (
        "deny", policy.id, policy.version)
    assert StepRun.objects.get(run=run, step_id="next").status == "cancelled"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lock_that_waited_reads_the_head_its_previous_holder_committed(tenant, advance):
    """In READ COMMITTED, a row that a waiting `FOR UPDATE` finds changed is read again at
    its newest version, but only if it is locked: the stream's head row is locked with the
    run, so the second holder appends after the first holder's event, not over it."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", input={}, actor="user:olivia")
    held, failures = threading.Event(), []

    def first_holder():
        try:
            with run_lock(run.run_id) as locked:
                held.set()
                deadline = time.monotonic() + 10
                with connection.cursor() as cursor:  # until the second lock waits on ours
                    while time.monotonic() < deadline:
                        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                       "wait_event_type = 'Lock' AND datname = "
                                       "current_database()")
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.01)
                    else:
                        failures.append("the second lock never waited")
                audit_append(tenant_id=tenant.id, stream=locked.stream_name,
                             code="FC-RUN-002", actor="user:otto",
                             data={"from": "running", "to": "running", "reason": "first"})
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        finally:
            connection.close()

    thread = threading.Thread(target=first_holder)
    thread.start()
    assert held.wait(10)
    with run_lock(run.run_id) as locked:  # waits for the first holder's COMMIT
        audit_append(tenant_id=tenant.id, stream=locked.stream_name, code="FC-RUN-002",
                     actor="user:otto",
                     data={"from": "running", "to": "running", "reason": "second"})
    thread.join()
    assert failures == []
    reasons = [e.data.get("reason") for e in
               AuditEvent.objects.filter(stream__name=run.stream_name).order_by("seq")]
    assert reasons[-2:] == ["first", "second"]
    # the chain holds; the rows are not checked against these hand-made events (the run's
    # status reason was never changed with them)
    assert audit_verify(checkpoints=False, facts=False).ok
