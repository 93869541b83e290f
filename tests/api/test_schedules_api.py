"""`GET /workflows/schedules`: the tenant's schedules with their next slot and last run;
another tenant's are never listed; it needs `runs:read`."""

from datetime import UTC, datetime

import pytest
import yaml

from audit.verify_pack import verify_pack
from runs.beat import schedules_start_due
from runs.bundles import bundle_load
from runs.cron import slot_next
from runs.models import Schedule

pytestmark = pytest.mark.django_db
PATH = "/workflows/schedules"


def schedules_bundle(tenant: str, *names: str) -> dict:
    return yaml.safe_load(
        f"tenant: {tenant}\n"
        "workflows:\n  - name: archive_flow\n    steps: [{id: archive, type: noop}]\n"
        "schedules:\n" + "".join(
            f"  - {{name: {n}, workflow: archive_flow, cron: '0 2 * * *', "
            f"timezone: Europe/Berlin, input: {{scope: {n}}}}}\n" for n in names))


def test_lists_the_tenants_schedules_with_next_slot_and_last_run(api, other_tenant, advance):
    bundle_load(schedules_bundle("tenant_omega", "nightly", "weekly"), actor="system:test")
    bundle_load(schedules_bundle("tenant_sigma", "sigma_only"), actor="system:test")
    start = datetime(2026, 12, 2, 12, tzinfo=UTC)
    Schedule.objects.filter(name="nightly").update(
        last_slot=start, next_slot=slot_next("0 2 * * *", "Europe/Berlin", after=start))
    with advance():
        started = schedules_start_due(now=datetime(2026, 12, 3, 1, 0, 10, tzinfo=UTC)).started
    assert [name for name, _, _ in started] == ["nightly"]

    response = api.get(PATH)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [s["name"] for s in body["results"]] == ["nightly", "weekly"]
    nightly = body["results"][0]
    assert {k: nightly[k] for k in ("workflow", "cron", "timezone", "input", "enabled",
                                    "paused", "active")} == {
        "workflow": "archive_flow", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
        "input": {"scope": "nightly"}, "enabled": True, "paused": False, "active": True}
    assert nightly["next_slot"] == "2026-12-04T01:00:00Z"
    assert nightly["last_slot"] == "2026-12-03T01:00:00Z"
    assert nightly["last_run"]["run_id"] == started[0][2]
    assert nightly["last_run"]["status"] == "completed"
    assert body["results"][1]["last_run"] is None
    # the scheduled run's evidence pack verifies and its FC-RUN-001 names the schedule
    pack = api.get(f"/workflows/runs/{started[0][2]}/evidence").json()
    verify_pack(pack)  # raises a Failure naming the field at fault
    assert pack["events"][0]["data"]["schedule"] == "nightly"
    assert pack["run"]["idempotency_key"] == "schedule:nightly:2026-12-03T01:00:00Z"


def test_a_page_of_one_links_the_next(api):
    bundle_load(schedules_bundle("tenant_omega", "a_first", "b_second"), actor="system:test")
    first = api.get(f"{PATH}?limit=1").json()
    assert [s["name"] for s in first["results"]] == ["a_first"]
    second = api.get(first["next"].split("testserver")[-1]).json()
    assert [s["name"] for s in second["results"]] == ["b_second"]


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "cursor=bz0tMQ%3D%3D"])  # o=-1
def test_bad_query_is_a_400(api, query):
    response = api.get(f"{PATH}?{query}")
    assert response.status_code == 400, response.content
    assert set(response.json()) >= {"code", "detail"}


def test_needs_runs_read(api):
    response = api.as_sub("auditor", scope="audit:read").get(PATH)
    assert response.status_code == 403
    assert api.get(PATH, token="omega_bad.token").status_code == 401
