"""Racing claims on PostgreSQL (real transactions, one connection per thread): each step is
handed to exactly one executor, and every step is recorded once."""

import pytest
from django.db import connection

from audit.models import AuditEvent
from fcore.errors import FCError
from fcore.models import Tenant
from runs import claims
from runs.definitions import definition_publish
from runs.models import Run, StepRun
from runs.services import run_create, step_report
from tests.concurrency import concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("audit_streams_verify")]

RUNS, THREADS = 6, 8
ONE_STEP = [{"id": "a", "type": "external"}]


def runs_of(advance, slug: str, steps: list, count: int) -> tuple:
    """A tenant `slug` with a workflow of `steps`, and `count` of its runs started."""
    tenant = Tenant.objects.create(slug=slug, name=slug)
    definition_publish(tenant=tenant, name="work", actor="user:priya", steps=steps)
    with advance():
        runs = [run_create(tenant=tenant, workflow="work", input={"i": i},
                           actor="user:olivia")[0] for i in range(count)]
    return tenant, runs


def test_racing_claims_hand_each_step_to_one_executor(advance):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    tenant, runs = runs_of(advance, "tenant_claims_pg", [
        {"id": "a", "type": "external:work"},
        {"id": "b", "type": "external:work", "after": ["a"]}], RUNS)

    def executor(i):
        """Claim and report until a claim comes back empty twice in a row."""
        done, empty = [], 0
        while empty < 2:
            tasks = claims.tasks_claim(tenant=tenant, actor=f"client:e{i}", max=2,
                                       lease_s=60, wait_s=0.2)
            empty = 0 if tasks else empty + 1
            for task in tasks:
                try:
                    step_report(tenant=tenant, run_id=task.run_id, step_id=task.step_id,
                                actor=f"client:e{i}", status="succeeded",
                                output={"by": i}, lease_token=task.lease_token)
                    done.append((task.run_id, task.step_id))
                except FCError as exc:
                    done.append(("refused", exc.code))
        return done

    results = concurrently(THREADS, executor)
    handled = [item for result in results for item in result]
    assert ("refused", "lease_lost") not in handled
    assert sorted(handled) == sorted((str(r.run_id), s) for r in runs for s in ("a", "b"))
    assert set(Run.objects.filter(pk__in=[r.pk for r in runs])
               .values_list("status", flat=True)) == {"completed"}
    events = AuditEvent.objects.filter(stream__name__in=[r.stream_name for r in runs])
    assert events.filter(code="FC-STEP-006").count() == RUNS * 2  # one claim per step
    assert events.filter(code="FC-STEP-002").count() == RUNS * 2
    assert StepRun.objects.filter(run__in=runs, status="succeeded").count() == RUNS * 2


def test_claims_racing_a_cancel_lose_cleanly(advance):
    """Executors claim while an operator cancels: a step is either not handed out or its
    report is refused (409); the run ends cancelled with no step result recorded."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    from runs.services import run_set_status

    tenant, runs = runs_of(advance, "tenant_claims_cancel", ONE_STEP, RUNS)

    def actor(i):
        if i == 0:
            for run in runs:
                try:
                    run_set_status(tenant=tenant, run_id=run.run_id, status="cancelled",
                                   actor="user:otto")
                except FCError as exc:  # its step was reported first: completed
                    assert exc.code == "invalid_transition"
            return []
        outcomes = []
        for task in claims.tasks_claim(tenant=tenant, actor=f"client:e{i}", max=RUNS):
            try:
                step_report(tenant=tenant, run_id=task.run_id, step_id=task.step_id,
                            actor=f"client:e{i}", status="succeeded", output={},
                            lease_token=task.lease_token)
                outcomes.append("recorded")
            except FCError as exc:
                outcomes.append(exc.code)
        return outcomes

    outcomes = [o for result in concurrently(4, actor) for o in result]
    recorded = outcomes.count("recorded")
    assert set(outcomes) <= {"recorded", "invalid_transition"}
    runs_now = Run.objects.filter(pk__in=[r.pk for r in runs])
    # a report that won before the cancel completed its run; every other run is cancelled
    assert sorted(runs_now.values_list("status", flat=True)) == sorted(
        ["completed"] * recorded + ["cancelled"] * (RUNS - recorded))
    events = AuditEvent.objects.filter(stream__name__in=[r.stream_name for r in runs])
    assert events.filter(code="FC-STEP-002").count() == recorded


def test_a_waiting_claim_holds_no_database_connection():
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL sessions")
    import threading
    import time

    from django.db import connections

    tenant = Tenant.objects.create(slug="tenant_claims_idle", name="Claims idle")

    def sessions() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database()")
            return cursor.fetchone()[0]

    before, result = sessions(), {}

    def waiting():
        try:
            result["tasks"] = claims.tasks_claim(tenant=tenant, actor="client:w", wait_s=3)
        finally:
            connections.close_all()

    thread = threading.Thread(target=waiting)
    thread.start()
    time.sleep(1.5)  # it has looked for work (a query) and is waiting now
    during = sessions()
    thread.join(10)
    assert result["tasks"] == []
    assert during == before


def test_a_claim_passes_over_a_run_another_transaction_holds(advance):
    """A claim takes the runs nobody holds and does not wait for the one a report (or
    another claim) holds: that run's step stays claimable for the next claim."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks of concurrent transactions need PostgreSQL")
    import threading

    from django.db import connections

    from runs.engine import run_lock

    tenant, (held_run, free_run) = runs_of(advance, "tenant_claims_skip", ONE_STEP, 2)
    locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with run_lock(held_run.run_id, tenant=tenant):
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10)
        first = claims.tasks_claim(tenant=tenant, actor="client:e1", max=2)
    finally:
        release.set()
        thread.join(10)
    assert [task.run_id for task in first] == [str(free_run.run_id)]
    second = claims.tasks_claim(tenant=tenant, actor="client:e2", max=2)
    assert [task.run_id for task in second] == [str(held_run.run_id)]
