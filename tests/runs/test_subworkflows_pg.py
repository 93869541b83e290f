"""Sub-workflows under real concurrent transactions on PostgreSQL: a child that ends
while another transaction holds its parent's lock wakes the parent once the lock is
free, and cancelling a parent while its child's last step is reported never deadlocks
(parent before child, and a child never locks its parent)."""

import threading
import time

import pytest
from django.db import connection, connections

from fcore.errors import FCError
from fcore.models import Tenant
from runs.definitions import definition_publish
from runs.engine import run_lock
from runs.models import RUN_TERMINAL, Run, RunStatus, StepRun
from runs.services import run_create, run_set_status, step_report

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("audit_streams_verify")]


@pytest.fixture
def family(db):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    tenant = Tenant.objects.create(slug="tenant_sub_pg", name="Sub PG")
    definition_publish(tenant=tenant, name="child", actor="user:p",
                       steps=[{"id": "work", "type": "external"}])
    definition_publish(tenant=tenant, name="parent", actor="user:p",
                       steps=[{"id": "go", "type": "workflow", "workflow": "child"}])
    return tenant


def start(tenant):
    run, _ = run_create(tenant=tenant, workflow="parent", input={}, actor="user:olivia")
    deadline = time.monotonic() + 30
    while not Run.objects.filter(parent_run=run, status=RunStatus.RUNNING).exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    return run, Run.objects.get(parent_run=run)


def in_thread(target, failures):
    def body():
        try:
            target()
        except FCError:
            pass  # a 409: the other transaction won
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failures.append(repr(exc))
        finally:
            connections.close_all()
    return threading.Thread(target=body)


def test_a_child_ending_while_its_parent_is_locked_wakes_it_after(family):
    run, child = start(family)
    locked, failures = threading.Event(), []

    def hold_parent():
        with run_lock(run.run_id):
            locked.set()
            time.sleep(1.0)  # meanwhile the child completes and its wake-up waits here
            assert Run.objects.get(pk=child.pk).status == RunStatus.COMPLETED

    holder = in_thread(hold_parent, failures)
    holder.start()
    locked.wait(10)
    reporter = in_thread(lambda: step_report(tenant=family, run_id=child.run_id,
                                             step_id="work", actor="user:exec",
                                             status="succeeded", output={"ok": 1}), failures)
    reporter.start()
    for thread in (holder, reporter):
        thread.join(60)
    assert not failures, failures
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert StepRun.objects.get(run=run, step_id="go").output["output"] == {"work": {"ok": 1}}


@pytest.mark.parametrize("attempt", range(4))
def test_cancelling_a_parent_while_its_child_ends_never_deadlocks(family, attempt):
    run, child = start(family)
    failures = []
    cancel = in_thread(lambda: run_set_status(tenant=family, run_id=run.run_id,
                                              status="cancelled", actor="user:op"), failures)
    finish = in_thread(lambda: step_report(tenant=family, run_id=child.run_id,
                                           step_id="work", actor="user:exec",
                                           status="succeeded", output={}), failures)
    threads = [cancel, finish] if attempt % 2 else [finish, cancel]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    run.refresh_from_db()
    child.refresh_from_db()
    assert run.status in RUN_TERMINAL and child.status in RUN_TERMINAL
    go = StepRun.objects.get(run=run, step_id="go")
    if run.status == RunStatus.COMPLETED:
        assert child.status == RunStatus.COMPLETED and go.output["run_id"] == str(child.run_id)
    else:
        assert run.status == RunStatus.CANCELLED and go.status == "failed"
