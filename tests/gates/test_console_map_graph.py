"""The run page's graph with the workflow language: a step skipped by its `when` says so,
a map step counts its instances, which are drawn under it when few and collapsed when many."""

from types import SimpleNamespace

import pytest

from fcore.interfaces.console.graph import MAP_SHOWN, step_graph_svg
from runs.definitions import definition_publish
from runs.services import run_create
from tests.gates import test_console as base
from tests.gates.test_console import login

tenant, fast_passwords = base.tenant, base.fast_passwords


def step(step_id, after=(), status="pending", parent="", error=None):
    return SimpleNamespace(step_id=step_id, after=list(after), status=status,
                           step_type="noop", map_parent=parent, error=error)


def mapped(count: int, statuses=("succeeded", "running")):
    return [step("plan", status="succeeded"), step("fan", ["plan"], status="running"),
            *[step(f"fan[{n}]", ["plan"], status=statuses[n % len(statuses)], parent="fan")
              for n in range(count)],
            step("done", ["fan"])]


def test_a_few_instances_are_drawn_under_their_map_step():
    svg = str(step_graph_svg(mapped(MAP_SHOWN)))
    assert svg.count('<g class="node') == 3 + MAP_SHOWN
    assert '<g class="node status-running map" data-step="fan">' in svg
    assert 'class="node-status">running · 2/4</text>' in svg
    assert '<g class="node status-succeeded instance" data-step="fan[0]">' in svg
    assert 'data-to="fan[0]"' not in svg  # instances share their map step's edges
    assert 'data-from="plan" data-to="fan"' in svg and 'data-from="fan" data-to="done"' in svg


def test_many_instances_collapse_into_their_map_step_with_a_count():
    svg = str(step_graph_svg(mapped(12)))
    assert svg.count('<g class="node') == 3 and 'data-step="fan[' not in svg
    assert 'class="node-id">fan ×12</text>' in svg
    assert 'class="node-status">running · 6/12</text>' in svg
    assert "map of 12: 6 running, 6 succeeded" in svg


def test_a_step_skipped_by_its_condition_says_so():
    svg = str(step_graph_svg([
        step("a", status="succeeded"),
        step("b", ["a"], status="skipped", error={"code": "skipped", "detail": "condition false"}),
        step("c", ["a"], status="cancelled", error={"code": "cancelled", "detail": "x"})]))
    assert '<g class="node status-skipped" data-step="b">' in svg
    assert 'class="node-status">skipped · when false</text>' in svg
    assert "b (noop): skipped (condition false)" in svg
    assert 'class="node-status">cancelled</text>' in svg


@pytest.mark.django_db
def test_the_run_page_shows_a_real_map_run_collapsed(tenant, django_capture_on_commit_callbacks):
    definition_publish(tenant=tenant, name="fan_page", actor="user:priya", steps=[
        {"id": "fan", "type": "noop", "map": "run.input.xs"},
        {"id": "never", "type": "noop", "when": "size(steps.fan.output.items) == 0"}])
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = run_create(tenant=tenant, workflow="fan_page", input={"xs": list(range(9))},
                            actor="user:olivia")
    body = login("olivia").get(f"/console/runs/{run.run_id}/").content.decode()
    assert '<g class="node status-succeeded map" data-step="fan">' in body
    assert "fan ×9" in body and "succeeded · 9/9" in body
    assert "skipped · when false" in body


def test_the_timeline_collapses_many_instances_into_their_map_step():
    from datetime import timedelta

    from django.utils import timezone

    from fcore.interfaces.console.graph import timeline_svg

    t0 = timezone.now()
    steps = mapped(12)
    for n, s in enumerate(steps):
        s.started_at, s.ended_at = t0 + timedelta(seconds=n), None
    assert str(timeline_svg(steps, now=t0 + timedelta(seconds=20))).count('<g class="bar') == 3
    few = mapped(2)
    for s in few:
        s.started_at, s.ended_at = t0, None
    assert str(timeline_svg(few, now=t0 + timedelta(seconds=2))).count('<g class="bar') == 5
