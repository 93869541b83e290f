"""A map's instances reported concurrently on PostgreSQL (real transactions, one
connection per thread): each is recorded once, never more than `max_concurrency` run at
once, and the map step succeeds once with every output in item order."""

import threading

import pytest
from django.db import connection, connections

from audit.models import AuditEvent
from fcore.errors import FCError
from fcore.models import Tenant
from runs.definitions import definition_publish
from runs.models import Run, RunStatus, StepRun, StepStatus
from runs.services import run_create, step_report

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("audit_streams_verify")]

ITEMS, LIMIT, THREADS = 12, 3, 4


def test_concurrent_reports_of_map_instances(advance):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    tenant = Tenant.objects.create(slug="tenant_map_pg", name="Map PG")
    definition_publish(tenant=tenant, name="fan", actor="user:priya", steps=[
        {"id": "fan", "type": "external", "map": "run.input.xs", "max_concurrency": LIMIT,
         "input": {"x": "=item"}},
        {"id": "done", "type": "noop"}])
    with advance():
        run, _ = run_create(tenant=tenant, workflow="fan", input={"xs": list(range(ITEMS))},
                            actor="user:olivia")
    failures, recorded = [], []

    def reporter():
        try:
            while not Run.objects.filter(pk=run.pk, status__in=["completed", "failed"]).exists():
                running = list(StepRun.objects.filter(run=run, status=StepStatus.RUNNING)
                               .exclude(map_parent="").values_list("step_id", "input"))
                for step_id, step_input in running:
                    try:
                        step_report(tenant=tenant, run_id=run.run_id, step_id=step_id,
                                    actor="user:exec", status="succeeded",
                                    output={"x2": step_input["x"] * 2})
                        recorded.append(step_id)
                    except FCError:  # another thread recorded it first: 409
                        pass
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reporter) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert sorted(recorded) == sorted(f"fan[{n}]" for n in range(ITEMS))  # once each
    fan = StepRun.objects.get(run=run, step_id="fan")
    assert fan.output == {"items": [{"x2": n * 2} for n in range(ITEMS)]}
    running, most = set(), 0
    for event in AuditEvent.objects.filter(stream__name=run.stream_name).order_by("seq"):
        step_id = event.data.get("step_id", "")
        if not step_id.startswith("fan["):
            continue
        if event.code == "FC-STEP-001":
            running.add(step_id)
        elif event.code == "FC-STEP-002":
            running.discard(step_id)
        most = max(most, len(running))
    assert most == LIMIT
    finished = AuditEvent.objects.filter(stream__name=run.stream_name, code="FC-STEP-002",
                                         data__step_id="fan")
    assert finished.count() == 1
