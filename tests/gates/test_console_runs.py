"""Run pages: list with filters and progress, the live run page (graph, timeline, receipts),
its polling partial, history restores, and cancelling a run."""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from fcore.interfaces.console.graph import duration_text, step_depths, step_graph_svg, timeline_svg
from runs.models import Run, RunStatus
from runs.services import run_create
from tests.gates import test_console as base
from tests.gates.test_console import HTMX, flash, login, open_gate

pytestmark = pytest.mark.django_db
tenant, make_run, fast_passwords = base.tenant, base.make_run, base.fast_passwords
other_tenant = base.other_tenant
RESTORE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}


@pytest.fixture
def nightly(tenant, django_capture_on_commit_callbacks):
    """A completed run of nightly_report: collect_a and collect_b, then publish."""
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = run_create(tenant=tenant, workflow="nightly_report", input={},
                            actor="user:olivia")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    return run


def step(step_id, after=(), status="pending", started=None, ended=None):
    return SimpleNamespace(step_id=step_id, after=list(after), status=status,
                           step_type="noop", started_at=started, ended_at=ended)


# --- pictures (pure) -------------------------------------------------------------------------

def test_depths_are_layers_of_the_longest_path():
    steps = [step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b", "c"]),
             step("e", ["a", "d"]), step("loose")]
    assert step_depths(steps) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3, "loose": 0}
    cyclic = [step("x", ["y"]), step("y", ["x"])]  # never loaded, but never a hang either
    assert set(step_depths(cyclic)) == {"x", "y"}


def test_graph_svg_has_a_node_per_step_an_edge_per_dependency_and_escapes():
    svg = str(step_graph_svg([step("a", status="succeeded"), step("b<script>", ["a"]),
                              step("c", ["a", "b<script>"], status="waiting")]))
    assert svg.startswith('<svg class="step-graph"') and svg.endswith("</svg>")
    assert svg.count('<g class="node') == 3 and svg.count('class="edge"') == 3
    assert '<g class="node status-succeeded" data-step="a">' in svg
    assert '<g class="node status-waiting" data-step="c">' in svg
    assert "<script>" not in svg and "b&lt;script&gt;" in svg
    assert "style=" not in svg
    xs = {m[0]: float(m[1]) for m in re.findall(r'data-step="([^"]+)">.*?<rect x="([\d.]+)"',
                                                 svg)}
    assert xs["a"] < xs["b&lt;script&gt;"] < xs["c"]  # one layer per depth, left to right


def test_timeline_and_durations():
    t0 = timezone.now()
    svg = str(timeline_svg([step("a", status="succeeded", started=t0,
                                 ended=t0 + timedelta(seconds=2)),
                            step("b", status="running", started=t0 + timedelta(seconds=2)),
                            step("c")], now=t0 + timedelta(seconds=4)))
    assert svg.count('<g class="bar') == 2 and "2.0 s" in svg
    assert str(timeline_svg([step("c")])) == ""
    assert [duration_text(s) for s in (None, 0.25, 12.5, 185, 7440)] == [
        "—", "250 ms", "12.5 s", "3 min 05 s", "2 h 04 min"]


# --- run list ----------------------------------------------------------------------------------

def test_run_list_shows_progress_and_filters(tenant, make_run, nightly):
    paused = make_run(tenant)
    client = login("olivia")
    body = client.get("/console/runs/").content.decode()
    assert str(paused.run_id) in body and str(nightly.run_id) in body
    assert re.search(rf'<progress value="1" max="3" aria-label="Steps done of run '
                     rf'{paused.run_id}">', body)
    assert re.search(rf'<progress value="3" max="3" aria-label="Steps done of run '
                     rf'{nightly.run_id}">', body)
    done = client.get("/console/runs/?status=completed").content.decode()
    assert str(nightly.run_id) in done and str(paused.run_id) not in done
    by_workflow = client.get("/console/runs/?workflow=vendor_payment").content.decode()
    assert str(paused.run_id) in by_workflow and str(nightly.run_id) not in by_workflow
    assert '<option value="vendor_payment" selected>' in by_workflow
    assert "style=" not in body


def test_run_list_partial_history_restore_and_constant_queries(tenant, make_run, nightly):
    for _ in range(3):
        make_run(tenant)
    client = login("olivia")
    partial = client.get("/console/runs/?status=paused", **HTMX).content.decode()
    assert "<html" not in partial and partial.lstrip().startswith('<div id="run-table">')
    restored = client.get("/console/runs/?status=paused", **RESTORE).content.decode()
    assert "<html" in restored and "<nav" in restored
    counts = []
    for per in (25, 100):
        with CaptureQueriesContext(connection) as ctx:
            client.get(f"/console/runs/?per={per}")
        counts.append(len(ctx.captured_queries))
    for _ in range(3):
        make_run(tenant)
    with CaptureQueriesContext(connection) as ctx:
        client.get("/console/runs/?per=25")
    assert counts[0] == counts[1] == len(ctx.captured_queries)


# --- run page ----------------------------------------------------------------------------------

def test_run_page_reads_each_of_the_runs_tables_once(tenant, make_run):
    """Steps, events, decisions, gates and votes are each read once per page (the receipt
    check and the gate rows use what the page read), for a paused run with a gate."""
    run = make_run(tenant)
    client = login("olivia")
    client.get(f"/console/runs/{run.run_id}/")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/console/runs/{run.run_id}/")
    assert response.status_code == 200 and "Gate " in response.content.decode()
    tables = ["runs_run", "runs_steprun", "audit_auditevent", "gates_policydecision",
              "gates_gate", "gates_approval"]
    reads = {table: sum(1 for q in ctx.captured_queries
                        if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"])
             for table in tables}
    assert reads == dict.fromkeys(tables, 1)

def test_run_page_shows_graph_timeline_and_verified_receipts(nightly):
    body = login("olivia").get(f"/console/runs/{nightly.run_id}/").content.decode()
    assert '<svg class="step-graph"' in body
    for step_id in ("collect_a", "collect_b", "publish"):
        assert f'<g class="node status-succeeded" data-step="{step_id}">' in body
    assert 'data-from="collect_a" data-to="publish"' in body
    assert '<svg class="timeline"' in body and 'class="duration"' in body
    assert 'id="receipts-status">verify<' in body
    assert "All 3 receipts verify, and so does the workflow hash" in body
    assert 'id="run-live"' in body and "hx-trigger" not in body.split('id="run-live"')[1][:200]
    assert f"/console/runs/{nightly.run_id}/evidence.json" in body
    assert f"/console/audit/?run={nightly.run_id}" in body
    assert "style=" not in body


def test_a_moving_run_polls_its_partial_and_a_restore_gets_the_page(tenant, make_run):
    run = make_run(tenant)
    client = login("adam")
    url = f"/console/runs/{run.run_id}/"
    page = client.get(url).content.decode()
    assert f'<div id="run-live" class="run-live" data-status="paused" hx-get="{url}" ' \
           f'hx-trigger="every 2s" hx-swap="outerHTML">' in page
    partial = client.get(url, **HTMX)
    body = partial.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<div id="run-live"')
    assert "HX-Request" in partial["Vary"]
    assert "<html" in client.get(url, **RESTORE).content.decode()
    # once it ends, the partial carries no trigger: polling stops
    gate = open_gate(run)
    login("adam").post(f"/console/gates/{gate.id}/decide",
                       {"decision": "reject", "comment": "no"})
    ended = client.get(url, **HTMX).content.decode()
    assert 'data-status="failed"' in ended and "hx-trigger" not in ended.split(">")[0]


def test_tampered_receipts_show_as_not_verified(nightly):
    from runs.models import StepRun
    StepRun.objects.filter(run=nightly, step_id="publish").update(output={"forged": True})
    body = login("olivia").get(f"/console/runs/{nightly.run_id}/").content.decode()
    assert 'id="receipts-status">do not verify<' in body
    assert "output_hash does not match the stored output" in body


# --- cancel ------------------------------------------------------------------------------------

def test_an_operator_cancels_a_run_with_a_reason(tenant, make_run):
    run = make_run(tenant)
    url = f"/console/runs/{run.run_id}/"
    page = login("olivia").get(url).content.decode()
    assert f'action="/console/runs/{run.run_id}/cancel"' in page
    assert '<label for="cancel-reason">' in page and 'name="csrfmiddlewaretoken"' in page
    response = login("olivia").post(f"{url}cancel", {"reason": " "})
    assert flash(response) == ["A reason is required to cancel a run."]
    assert Run.objects.get(pk=run.pk).status == RunStatus.PAUSED
    response = login("olivia").post(f"{url}cancel", {"reason": "vendor withdrew"})
    assert response.status_code == 302 and response["Location"] == url
    assert flash(response) == ["Run cancelled."]
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    event = AuditEvent.objects.filter(stream__name=run.stream_name, code="FC-RUN-002").last()
    assert event.actor == "user:olivia" and event.data["to"] == "cancelled"
    assert "vendor withdrew" in str(event.data)
    after = login("olivia").get(url).content.decode()
    assert "/cancel\"" not in after  # a terminal run offers no cancel
    again = login("olivia").post(f"{url}cancel", {"reason": "twice"})
    assert flash(again)[0].startswith("The run cannot be cancelled")


def test_only_operators_may_cancel(tenant, make_run):
    run = make_run(tenant)
    url = f"/console/runs/{run.run_id}/"
    assert f"{url}cancel" not in login("adam").get(url).content.decode()
    response = login("adam").post(f"{url}cancel", {"reason": "mine now"})
    assert flash(response) == ["Only operators may cancel a run (it needs the runs:write scope)."]
    assert Run.objects.get(pk=run.pk).status == RunStatus.PAUSED
    assert login("olivia").get(f"{url}cancel").status_code == 405


def test_another_tenants_run_cannot_be_cancelled(tenant, other_tenant, make_run):
    run = make_run(tenant)
    response = login("oscar").post(f"/console/runs/{run.run_id}/cancel", {"reason": "x"})
    assert response.status_code == 404
    assert Run.objects.get(pk=run.pk).status == RunStatus.PAUSED
