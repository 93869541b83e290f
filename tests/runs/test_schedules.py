"""Schedules (DESIGN §11): bundles carry them, checked whole; beat starts one run per
slot (idempotency key `schedule:<name>:<slot>`), recovers a missed slot once and records
older ones as skipped; operators pause and resume them, audited."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from django.core.management import call_command

from audit.codes import Code
from audit.models import AuditEvent
from runs.beat import schedules_start_due
from runs.bundles import BundleError, bundle_export, bundle_load
from runs.cron import slot_next
from runs.models import Run, RunStatus, Schedule
from runs.schedules import schedule_set_paused

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_streams_verify")]

BUNDLE = """\
tenant: tenant_sched
workflows:
  - name: archive_flow
    steps:
      - {id: archive, type: noop}
schedules:
  - name: nightly_archive
    workflow: archive_flow
    cron: "0 2 * * *"
    timezone: Europe/Berlin
    input: {scope: nightly}
  - {name: hourly, workflow: archive_flow, cron: "0 * * * *"}
"""


def load(text: str = BUNDLE, source: str = "s.yaml"):
    return bundle_load(yaml.safe_load(text), actor="system:test", source=source, text=text)


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def counting_from(name: str, when: datetime) -> Schedule:
    """Set a schedule's clock: slots after `when` are due (test set-up, not a service)."""
    schedule = Schedule.objects.get(name=name)
    Schedule.objects.filter(pk=schedule.pk).update(
        last_slot=when, next_slot=slot_next(schedule.cron, schedule.timezone, after=when))
    return Schedule.objects.get(pk=schedule.pk)


def admin_events(code):
    return list(AuditEvent.objects.filter(stream__name="tenant/tenant_sched/admin", code=code)
                .order_by("seq"))


# --- bundles -----------------------------------------------------------------------------

def test_a_bundle_loads_its_schedules_and_loading_it_again_changes_nothing():
    summary = load()
    assert summary["schedules"] == [{"name": "nightly_archive", "changed": True},
                                    {"name": "hourly", "changed": True}]
    nightly = Schedule.objects.get(name="nightly_archive")
    assert (nightly.workflow, nightly.cron, nightly.timezone, nightly.input, nightly.enabled,
            nightly.paused) == ("archive_flow", "0 2 * * *", "Europe/Berlin",
                                {"scope": "nightly"}, True, False)
    assert Schedule.objects.get(name="hourly").timezone == "UTC"
    assert nightly.next_slot > nightly.last_slot
    created = admin_events(Code.SCHEDULE_CHANGED)
    assert [(e.data["schedule"], e.data["action"]) for e in created] == [
        ("nightly_archive", "created"), ("hourly", "created")]
    assert load()["schedules"] == [{"name": "nightly_archive", "changed": False},
                                   {"name": "hourly", "changed": False}]
    assert len(admin_events(Code.SCHEDULE_CHANGED)) == 2


def test_a_schedule_may_start_a_workflow_published_before():
    load()
    summary = load("tenant: tenant_sched\nschedules:\n"
                   "  - {name: later, workflow: archive_flow, cron: '@daily'}\n")
    assert summary["schedules"] == [{"name": "later", "changed": True}]


def test_export_carries_schedules_and_loads_back_unchanged():
    load()
    exported = bundle_export(Schedule.objects.get(name="hourly").tenant)
    assert exported["schedules"] == [
        {"name": "hourly", "workflow": "archive_flow", "cron": "0 * * * *",
         "timezone": "UTC", "input": {}, "enabled": True},
        {"name": "nightly_archive", "workflow": "archive_flow", "cron": "0 2 * * *",
         "timezone": "Europe/Berlin", "input": {"scope": "nightly"}, "enabled": True}]
    summary = bundle_load(exported, actor="system:test")
    assert {s["changed"] for s in summary["schedules"]} == {False}


# (what is changed in BUNDLE, the message's end, the line and column of the key)
BAD = [
    ("workflow: archive_flow\n    cron", "workflow: nope\n    cron",
     "schedule nightly_archive: workflow 'nope' is not a workflow of this tenant or bundle",
     (8, 5)),
    ('cron: "0 2 * * *"', 'cron: "0 25 * * *"',
     "schedule nightly_archive: cron '0 25 * * *' is not a valid cron expression", (9, 5)),
    ('cron: "0 2 * * *"', 'cron: "0 2 * *"',
     "schedule nightly_archive: cron '0 2 * *' must have five fields", (9, 5)),
    ("timezone: Europe/Berlin", "timezone: Europe/Atlantis",
     "schedule nightly_archive: timezone unknown time zone 'Europe/Atlantis'", (10, 5)),
    ("input: {scope: nightly}", "input: [nightly]",
     "schedule nightly_archive: input must be an object", (11, 5)),
    ("{name: hourly,", "{name: nightly_archive,",
     "schedule nightly_archive: a second schedule of that name", (12, 6)),
    ("{name: hourly,", "{name: 'no spaces',",
     "schedule no spaces: name must be up to 100 letters", (12, 6)),
    ("{name: hourly,", "{name: hourly, enabled: 'yes',",
     "schedule hourly: enabled must be true or false", (12, 20)),
    ("{name: hourly,", "{name: hourly, every: 5,",
     "schedule hourly: unknown key(s) every", (12, 20)),
]


@pytest.mark.parametrize(("old", "new", "message", "position"), BAD)
def test_a_bad_schedule_refuses_the_bundle_naming_schedule_key_and_position(
        old, new, message, position):
    text = BUNDLE.replace(old, new, 1)
    assert text != BUNDLE
    with pytest.raises(BundleError) as caught:
        load(text)
    assert message in str(caught.value)
    assert (caught.value.line, caught.value.column) == position
    assert f"(at line {position[0]}, column {position[1]})" in str(caught.value)
    assert not Schedule.objects.exists()
    assert not Run.objects.exists()


def test_load_workflows_names_the_schedules(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BUNDLE, encoding="utf-8")
    from io import StringIO

    out = StringIO()
    call_command("load_workflows", str(path), stdout=out)
    assert f"{path}: schedule nightly_archive (saved)" in out.getvalue()


# --- beat ----------------------------------------------------------------------------------

def test_beat_starts_one_run_per_slot_with_the_schedules_key(advance):
    load()
    counting_from("nightly_archive", utc(2026, 12, 2, 12))
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    now = utc(2026, 12, 3, 3, 59)  # 02:00 in Berlin is 01:00 UTC
    with advance():
        result = schedules_start_due(now=now)
    assert sorted(name for name, _, _ in result.started) == ["nightly_archive"]
    run = Run.objects.get()
    assert run.idempotency_key == "schedule:nightly_archive:2026-12-03T01:00:00Z"
    assert run.input == {"scope": "nightly"}
    assert run.metadata == {"schedule": "nightly_archive", "slot": "2026-12-03T01:00:00Z"}
    assert run.status == RunStatus.COMPLETED
    created = AuditEvent.objects.get(stream__name=run.stream_name, code=Code.RUN_CREATED)
    assert created.data["schedule"] == "nightly_archive"
    assert created.actor == "system:scheduler"
    nightly = Schedule.objects.get(name="nightly_archive")
    assert (nightly.last_slot, nightly.next_slot, nightly.last_run_id) == (
        utc(2026, 12, 3, 1), utc(2026, 12, 4, 1), run.run_id)
    # the same beat again, or a restarted one: nothing more for that slot
    with advance():
        assert schedules_start_due(now=now).started == []
        assert schedules_start_due(now=now + timedelta(seconds=30)).started == []
    assert Run.objects.count() == 1
    with advance():
        later = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 5))
    assert [name for name, _, _ in later.started] == ["hourly"]
    assert Run.objects.count() == 2


def test_a_slot_already_started_is_not_started_twice(advance):
    """Even when `last_slot` is behind (a beat that crashed before saving it, or two
    beats without the row lock), the idempotency key finds the slot's first run."""
    load()
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    with advance():
        first = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 10)).started
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    with advance():
        again = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 20))
    assert (again.started, again.existing) == ([], 1)
    assert Schedule.objects.get(name="hourly").last_run_id == Run.objects.get().run_id
    assert [str(Run.objects.get().run_id)] == [run_id for _, _, run_id in first]
    assert len(AuditEvent.objects.filter(code=Code.RUN_CREATED)) == 1


def test_a_slot_started_before_the_input_changed_keeps_its_run(advance):
    load()
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    with advance():
        first = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 10)).started
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    Schedule.objects.filter(name="hourly").update(input={"changed": True})
    with advance():
        again = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 20))
    assert (again.started, again.existing) == ([], 1)
    assert Run.objects.get().input == {}
    assert str(Schedule.objects.get(name="hourly").last_run_id) == first[0][2]


def test_a_broken_schedule_does_not_stop_the_others(advance, caplog):
    load()
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    counting_from("nightly_archive", utc(2026, 12, 2, 12))
    Schedule.objects.filter(name="nightly_archive").update(timezone="Nowhere/Gone")
    with advance():
        result = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 5))
    assert [name for name, _, _ in result.started] == ["hourly"]
    assert result.as_dict() == {"started": 1, "existing": 0, "skipped": 0, "failed": 1}
    assert "due slots not dealt with" in caplog.text
    assert Schedule.objects.get(name="nightly_archive").last_slot == utc(2026, 12, 2, 12)


def test_after_beat_was_down_the_last_missed_slot_runs_once_and_older_are_skipped(advance):
    load()
    counting_from("hourly", utc(2026, 12, 3, 0, 30))
    with advance():
        result = schedules_start_due(now=utc(2026, 12, 3, 5, 10))
    assert [slot for _, slot, _ in result.started] == ["2026-12-03T05:00:00Z"]
    assert result.skipped == 4
    skipped = admin_events(Code.SCHEDULE_SLOTS_SKIPPED)
    assert [e.data for e in skipped] == [{
        "schedule": "hourly", "count": 4, "first": "2026-12-03T01:00:00Z",
        "last": "2026-12-03T04:00:00Z", "reason": "missed while beat was down"}]
    assert skipped[0].actor == "system:scheduler"
    assert Run.objects.get().idempotency_key == "schedule:hourly:2026-12-03T05:00:00Z"
    with advance():
        assert schedules_start_due(now=utc(2026, 12, 3, 5, 20)).started == []
    assert len(admin_events(Code.SCHEDULE_SLOTS_SKIPPED)) == 1


def test_after_a_long_outage_only_the_last_31_days_are_counted(advance):
    load()
    counting_from("hourly", utc(2026, 9, 1))
    with advance():
        result = schedules_start_due(now=utc(2026, 12, 3, 5, 10))
    assert [slot for _, slot, _ in result.started] == ["2026-12-03T05:00:00Z"]
    (event,) = admin_events(Code.SCHEDULE_SLOTS_SKIPPED)
    assert (event.data["count"], event.data["first"], event.data["last"]) == (
        31 * 24 - 1, "2026-11-02T06:00:00Z", "2026-12-03T04:00:00Z")


def test_slots_within_the_catchup_window_all_run(advance, settings):
    settings.FCORE_SCHEDULE_CATCHUP_S = 120
    load("tenant: tenant_sched\nworkflows:\n  - name: w\n    steps: [{id: a, type: noop}]\n"
         "schedules:\n  - {name: every_minute, workflow: w, cron: '* * * * *'}\n")
    counting_from("every_minute", utc(2026, 12, 3, 9, 0))
    with advance():
        result = schedules_start_due(now=utc(2026, 12, 3, 9, 5, 30))
    # 09:04 and 09:05 are within two minutes of 09:05:30; 09:01–09:03 are skipped
    assert [slot for _, slot, _ in result.started] == ["2026-12-03T09:04:00Z",
                                                       "2026-12-03T09:05:00Z"]
    assert admin_events(Code.SCHEDULE_SLOTS_SKIPPED)[0].data["count"] == 3


def test_a_slot_whose_run_is_refused_is_recorded_skipped(advance):
    load()
    counting_from("hourly", utc(2026, 12, 3, 3, 30))
    Schedule.objects.filter(name="hourly").update(input={"n": 2**60})  # not hashable JSON
    with advance():
        result = schedules_start_due(now=utc(2026, 12, 3, 4, 0, 5))
    assert result.started == [] and result.skipped == 1
    event = admin_events(Code.SCHEDULE_SLOTS_SKIPPED)[0]
    assert event.data["reason"].startswith("run not started: ")
    assert event.data["first"] == "2026-12-03T04:00:00Z"
    assert Schedule.objects.get(name="hourly").last_slot == utc(2026, 12, 3, 4)


def test_a_disabled_schedule_starts_nothing(advance):
    load(BUNDLE.replace("{name: hourly,", "{name: hourly, enabled: false,"))
    hourly = Schedule.objects.get(name="hourly")
    assert hourly.next_slot is None
    Schedule.objects.filter(pk=hourly.pk).update(next_slot=utc(2026, 12, 3, 4))
    with advance():
        assert schedules_start_due(now=utc(2026, 12, 3, 5)).started == []


# --- pause and resume ------------------------------------------------------------------------

def test_pause_and_resume_are_audited_and_a_paused_schedule_starts_nothing(advance):
    load()
    hourly = counting_from("hourly", utc(2026, 12, 3, 3, 30))
    paused = schedule_set_paused(tenant=hourly.tenant, name="hourly", paused=True,
                                 actor="user:olivia")
    assert paused.paused and paused.next_slot is None
    with advance():
        assert schedules_start_due(now=utc(2026, 12, 3, 4, 0, 5)).started == []
    # pausing again changes nothing and records nothing
    schedule_set_paused(tenant=hourly.tenant, name="hourly", paused=True, actor="user:olivia")
    # a reload of the bundle keeps the operator's pause
    load(BUNDLE.replace(
        '{name: hourly, workflow: archive_flow, cron: "0 * * * *"}',
        '{name: hourly, workflow: archive_flow, cron: "0 * * * *", input: {x: 1}}'))
    assert Schedule.objects.get(name="hourly").paused
    resumed = schedule_set_paused(tenant=hourly.tenant, name="hourly", paused=False,
                                  actor="user:olivia")
    assert not resumed.paused and resumed.next_slot > resumed.last_slot
    events = [(e.data["action"], e.actor) for e in admin_events(Code.SCHEDULE_CHANGED)
              if e.data["schedule"] == "hourly"]
    assert events == [("created", "system:test"), ("paused", "user:olivia"),
                      ("changed", "system:test"), ("resumed", "user:olivia")]


def test_pausing_another_tenants_schedule_is_not_found(other_tenant):
    from fcore.errors import NotFound

    load()
    with pytest.raises(NotFound):
        schedule_set_paused(tenant=other_tenant, name="hourly", paused=True, actor="user:x")
    assert not Schedule.objects.get(name="hourly").paused


def test_admin_lists_and_pauses_schedules(client):
    from django.contrib.auth.models import User

    load()
    admin = User.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(admin)
    page = client.get("/admin/runs/schedule/")
    assert page.status_code == 200
    assert b"nightly_archive" in page.content and b"hourly" in page.content
    hourly = Schedule.objects.get(name="hourly")
    response = client.post("/admin/runs/schedule/", {
        "action": "pause_schedules", "_selected_action": [hourly.pk]})
    assert response.status_code == 302
    assert Schedule.objects.get(pk=hourly.pk).paused
    assert admin_events(Code.SCHEDULE_CHANGED)[-1].data == {"schedule": "hourly",
                                                            "action": "paused"}
    assert admin_events(Code.SCHEDULE_CHANGED)[-1].actor == "user:root"
    client.post("/admin/runs/schedule/", {"action": "resume_schedules",
                                          "_selected_action": [hourly.pk]})
    assert not Schedule.objects.get(pk=hourly.pk).paused
    detail = client.get(f"/admin/runs/schedule/{hourly.pk}/change/")
    assert detail.status_code == 200 and b'name="cron"' not in detail.content


def test_admin_shows_staff_only_their_tenants_schedules(client, other_tenant):
    from django.contrib.auth.models import Permission, User

    from fcore.members import member_set

    load()
    load(BUNDLE.replace("tenant: tenant_sched", "tenant: tenant_sigma").replace(
        "name: nightly_archive", "name: sigma_nightly"))
    member_set(tenant=other_tenant, username="sigma_staff", groups=["operators"],
               actor="system:test")
    staff = User.objects.get(username="sigma_staff")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="runs", codename__in=["view_schedule", "change_schedule"]))
    staff = User.objects.get(pk=staff.pk)
    client.force_login(staff)
    page = client.get("/admin/runs/schedule/")
    assert page.status_code == 200 and b"sigma_nightly" in page.content
    assert b"nightly_archive" not in page.content
    hourly = Schedule.objects.get(name="hourly", tenant__slug="tenant_sched")
    client.post("/admin/runs/schedule/", {"action": "pause_schedules",
                                          "_selected_action": [hourly.pk]})
    assert not Schedule.objects.get(pk=hourly.pk).paused
    assert client.get(f"/admin/runs/schedule/{hourly.pk}/change/").status_code in (302, 404)
    own = Schedule.objects.get(name="sigma_nightly")
    client.post("/admin/runs/schedule/", {"action": "pause_schedules",
                                          "_selected_action": [own.pk]})
    assert Schedule.objects.get(pk=own.pk).paused


def test_beat_sends_the_task_that_starts_due_schedules(settings, advance):
    from django.utils import timezone

    from runs.tasks import start_due_schedules

    entry = settings.CELERY_BEAT_SCHEDULE["schedules-start-due"]
    assert entry == {"task": "runs.tasks.start_due_schedules",
                     "schedule": settings.FCORE_SCHEDULE_INTERVAL_S}
    load()
    counting_from("hourly", timezone.now() - timedelta(hours=1, minutes=1))
    with advance():
        outcome = start_due_schedules.apply().get()
    assert outcome == {"started": 1, "existing": 0, "skipped": 0, "failed": 0}
    assert Run.objects.get().idempotency_key.startswith("schedule:hourly:")


def test_the_worked_example_carries_a_nightly_schedule():
    from tests.conftest import load_bundle

    summary = load_bundle("docs/examples/agent_payment.yaml")
    assert summary["schedules"] == [{"name": "nightly_archive", "changed": True}]
    assert Schedule.objects.get(name="nightly_archive").workflow == "archive_flow"
