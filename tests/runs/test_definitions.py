"""Workflow definitions: step graph validation, publishing versions, runs pin a version."""

import pytest

from audit.models import AuditEvent
from audit.services import admin_stream_name
from fcore.models import Tenant
from runs.definitions import DefinitionError, definition_publish, steps_validate
from runs.models import RunStatus, StepStatus, WorkflowDefinition
from runs.services import run_create, step_report

# --- steps_validate (pure) ---------------------------------------------------------------


def test_step_ids_of_url_safe_characters_are_kept():
    ids = ["a", "step_1", "Step-2", "v1.2", "_x", "9", "x" * 100]
    assert [s["id"] for s in steps_validate([{"id": i, "type": "noop"} for i in ids])] == ids


def test_after_defaults_to_the_previous_step():
    clean = steps_validate([{"id": "a", "type": "noop"}, {"id": "b", "type": "external"},
                            {"id": "c", "type": "noop"}])
    assert [(s["id"], s["after"]) for s in clean] == [("a", []), ("b", ["a"]), ("c", ["b"])]


@pytest.mark.parametrize(("steps", "after"), [
    ([{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "after": []}], [[], []]),
    ([{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "after": "a"}], [[], ["a"]]),
    ([{"id": "a", "type": "noop", "after": []}, {"id": "b", "type": "noop", "after": []},
      {"id": "c", "type": "noop", "after": ["a", "b"]}], [[], [], ["a", "b"]]),
    ([{"id": "late", "type": "noop", "after": ["early"]}, {"id": "early", "type": "noop",
                                                           "after": []}], [["early"], []]),
])
def test_explicit_after_is_kept(steps, after):
    assert [s["after"] for s in steps_validate(steps)] == after


@pytest.mark.parametrize(("steps", "message"), [
    ([], "steps must be a non-empty list"),
    ({"id": "a"}, "steps must be a non-empty list"),
    (["a"], "step #1 must be an object"),
    ([{"type": "noop"}], "step #1 has no id"),
    ([{"id": "a", "type": "noop"}, {"id": "", "type": "noop"}], "step #2 has no id"),
    ([{"id": "a", "type": "noop"}, {"id": "a", "type": "external"}],
     "step 'a': duplicate id"),
    *[([{"id": bad, "type": "noop"}], f"step #1: id {bad[:120]!r} must be 1-100 letters")
      for bad in ("a/b", "a%2Fb", "a b", " a", "a\n", ".", "..", ".hidden", "a[0]", "a?b",
                  "a#b", "é", "x" * 101)],
    ([{"id": "a", "type": "shell"}],
     "step 'a': type must be one of noop, external, external:<name>, approval, http, sleep, "
     "workflow, python:<dotted.path>, not 'shell'"),
    ([{"id": "a", "type": "workflow"}], "step 'a': workflow: the name of the child workflow"),
    ([{"id": "a", "type": "workflow", "workflow": "w", "version": 0}],
     "step 'a': version must be a positive integer"),
    ([{"id": "a", "type": "workflow", "workflow": "w", "timeout_s": 5}],
     "step 'a': a workflow step takes no timeout_s"),
    ([{"id": "a", "type": "noop", "workflow": "w"}], "step 'a': only workflow steps take workflow"),
    ([{"id": "a"}], "step 'a': type must be one of"),
    ([{"id": "a", "type": "noop", "retries": 3}], "step 'a': unknown key(s) retries"),
    ([{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "after": ["a", "zz"]}],
     "step 'b': after names unknown step(s) zz"),
    ([{"id": "a", "type": "noop", "after": [1]}], "step 'a': after must be a list of step ids"),
    ([{"id": "a", "type": "noop", "input": [1]}], "step 'a': input must be an object"),
    ([{"id": "a", "type": "noop", "gate": {"required_approvals": 2}}],
     "step 'a': only approval steps take a gate block"),
    ([{"id": "a", "type": "approval", "gate": {"required_approvals": 0}}],
     "step 'a': gate: required_approvals: an integer from 1 to 20"),
    ([{"id": "a", "type": "approval", "gate": {"quorum": 2}}],
     "step 'a': gate: quorum: unknown setting"),
    ([{"id": "a", "type": "approval", "gate": {"on_timeout": "escalate"}}],
     "step 'a': gate: escalate_to: required when on_timeout is escalate"),
    ([{"id": "a", "type": "approval", "gate": {"input_schema": {"type": "nonsense"}}}],
     "step 'a': gate: input_schema: not a valid JSON Schema"),
])
def test_steps_validate_refuses(steps, message):
    with pytest.raises(DefinitionError) as info:
        steps_validate(steps)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("steps", "cycle_members"), [
    ([{"id": "a", "type": "noop", "after": ["a"]}], {"a"}),
    ([{"id": "a", "type": "noop", "after": ["b"]}, {"id": "b", "type": "noop"}], {"a", "b"}),
    ([{"id": "start", "type": "noop", "after": []},
      {"id": "x", "type": "noop", "after": ["start", "z"]},
      {"id": "y", "type": "noop", "after": ["x"]},
      {"id": "z", "type": "noop", "after": ["y"]}], {"x", "y", "z"}),
])
def test_a_cycle_is_refused_and_the_message_names_it(steps, cycle_members):
    with pytest.raises(DefinitionError) as info:
        steps_validate(steps)
    message = str(info.value)
    assert message.startswith("the steps form a cycle: ")
    path = message.removeprefix("the steps form a cycle: ").split(" -> ")
    assert set(path) == cycle_members
    assert path[0] == path[-1]  # the path closes on itself


def test_approval_steps_get_complete_gate_settings():
    (step,) = steps_validate([{"id": "ok", "type": "approval",
                               "gate": {"required_approvals": 2, "approver_group": "finance"}}])
    assert step["gate"] == {"required_approvals": 2, "approver_group": "finance",
                            "expires_in": 3 * 24 * 3600, "on_timeout": "reject",
                            "escalate_to": "", "input_schema": None}
    (bare,) = steps_validate([{"id": "ok", "type": "approval"}])
    assert bare["gate"]["required_approvals"] == 1
    assert bare["gate"]["approver_group"] == "approvers"


# --- definition_publish ------------------------------------------------------------------

STEPS_V1 = [{"id": "prepare", "type": "noop"}, {"id": "deliver", "type": "external"}]
STEPS_V2 = [{"id": "prepare", "type": "noop"}, {"id": "check", "type": "noop"},
            {"id": "deliver", "type": "external"}]


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(slug="tenant_defs", name="Definitions")


def admin_events(tenant, code="FC-ADM-002"):
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug),
                                          code=code).order_by("seq"))


def test_publishing_the_same_steps_twice_makes_one_version(tenant):
    first, created = definition_publish(tenant=tenant, name="wf", steps=STEPS_V1,
                                        actor="user:priya")
    again, created_again = definition_publish(tenant=tenant, name="wf",
                                              steps=[dict(s) for s in STEPS_V1],
                                              actor="user:someone")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk and again.version == 1
    assert WorkflowDefinition.objects.filter(tenant=tenant, name="wf").count() == 1
    assert len(admin_events(tenant)) == 1


def test_the_normalised_form_decides_whether_steps_changed(tenant):
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V1, actor="user:priya")
    explicit = [{"id": "prepare", "type": "noop", "after": []},
                {"id": "deliver", "type": "external", "after": "prepare"}]
    definition, created = definition_publish(tenant=tenant, name="wf", steps=explicit,
                                             actor="user:priya")
    assert created is False and definition.version == 1


def test_changed_steps_become_version_2_with_an_admin_event(tenant):
    v1, _ = definition_publish(tenant=tenant, name="wf", steps=STEPS_V1, actor="user:priya")
    v2, created = definition_publish(tenant=tenant, name="wf", steps=STEPS_V2,
                                     actor="user:priya")
    assert created is True and (v1.version, v2.version) == (1, 2)
    assert v1.spec_hash != v2.spec_hash
    v1.refresh_from_db()
    assert [s["id"] for s in v1.steps] == ["prepare", "deliver"]  # v1 untouched
    events = admin_events(tenant)
    assert [e.data["version"] for e in events] == [1, 2]
    last = events[-1]
    assert last.stream.name == f"tenant/{tenant.slug}/admin"
    assert last.actor == "user:priya"
    assert last.data == {"workflow": "wf", "version": 2, "spec_hash": v2.spec_hash,
                         "steps": ["prepare", "check", "deliver"]}
    assert last.message == "Workflow definition 'wf' version 2 published"


def test_versions_are_counted_per_workflow_and_tenant(tenant):
    other = Tenant.objects.create(slug="tenant_other", name="Other")
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V1, actor="user:priya")
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V2, actor="user:priya")
    elsewhere, _ = definition_publish(tenant=other, name="wf", steps=STEPS_V2,
                                      actor="user:priya")
    sibling, _ = definition_publish(tenant=tenant, name="wf2", steps=STEPS_V2,
                                    actor="user:priya")
    assert (elsewhere.version, sibling.version) == (1, 1)
    assert len(admin_events(other)) == 1


@pytest.mark.parametrize(("name", "steps", "message"), [
    ("", STEPS_V1, "a workflow needs a name"),
    ("wf", [{"id": "a", "type": "bogus"}], "step 'a': type must be one of"),
])
def test_an_invalid_definition_publishes_nothing(tenant, name, steps, message):
    with pytest.raises(DefinitionError, match=message):
        definition_publish(tenant=tenant, name=name, steps=steps, actor="user:priya")
    assert not WorkflowDefinition.objects.filter(tenant=tenant).exists()
    assert admin_events(tenant) == []


# --- runs pin their version --------------------------------------------------------------

def test_a_run_keeps_the_version_it_was_started_with(tenant, advance):
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V1, actor="user:priya")
    with advance():
        old, _ = run_create(tenant=tenant, workflow="wf", input={"n": 1}, actor="user:olivia")
    old.refresh_from_db()
    assert old.status == RunStatus.RUNNING and old.definition.version == 1
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V2, actor="user:priya")
    with advance():
        new, _ = run_create(tenant=tenant, workflow="wf", input={"n": 2}, actor="user:olivia")
    assert new.definition.version == 2
    with advance():
        step_report(tenant=tenant, run_id=old.run_id, step_id="deliver", actor="client:exec",
                    status="succeeded", output={"ok": True})
    old.refresh_from_db()
    assert old.status == RunStatus.COMPLETED
    assert [(s.step_id, s.status) for s in old.steps.order_by("index")] == [
        ("prepare", StepStatus.SUCCEEDED), ("deliver", StepStatus.SUCCEEDED)]
    assert [s.step_id for s in new.steps.order_by("index")] == ["prepare", "check", "deliver"]
    created = AuditEvent.objects.get(stream__name=old.stream_name, code="FC-RUN-001")
    assert created.data["version"] == 1 and created.data["steps"] == ["prepare", "deliver"]


def test_a_run_can_ask_for_an_older_version(tenant, advance):
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V1, actor="user:priya")
    definition_publish(tenant=tenant, name="wf", steps=STEPS_V2, actor="user:priya")
    with advance():
        run, _ = run_create(tenant=tenant, workflow="wf", version=1, input={},
                            actor="user:olivia")
    assert run.definition.version == 1
    assert run.steps.count() == 2


# --- step types, retry and timeout_s (steps_validate, pure) ------------------------------

NOOP = {"id": "n", "type": "noop"}


@pytest.mark.parametrize(("step", "message"), [
    ({"id": "h", "type": "http", "url": "http://evil.example/hook"},
     "step 'h': url must be on the allow-list (settings.FCORE_HTTP_ALLOWED_URLS), "
     "not 'http://evil.example/hook'"),
    ({"id": "h", "type": "http", "url": "http://127.0.0.1:@evil.example/"},
     "step 'h': url must be on the allow-list"),
    ({"id": "h", "type": "http", "url": "http://127.0.0.1@evil.example/"},
     "step 'h': url must be on the allow-list"),
    ({"id": "h", "type": "http", "url": "http://user@127.0.0.1/"},
     "step 'h': url must be on the allow-list"),
    ({"id": "h", "type": "http", "url": "https://127.0.0.1/"},
     "step 'h': url must be on the allow-list"),
    ({"id": "h", "type": "http", "url": "http://127.0.0.1.evil.example/"},
     "step 'h': url must be on the allow-list"),
    ({"id": "h", "type": "http"}, "step 'h': url must be on the allow-list"),
    ({"id": "s", "type": "sleep"}, "step 's': seconds must be a number from 0 to 604800"),
    ({"id": "s", "type": "sleep", "seconds": -1}, "step 's': seconds must be a number"),
    ({"id": "s", "type": "sleep", "seconds": "5"}, "step 's': seconds must be a number"),
    ({"id": "s", "type": "sleep", "seconds": True}, "step 's': seconds must be a number"),
    ({"id": "s", "type": "sleep", "seconds": 604801}, "step 's': seconds must be a number"),
    ({"id": "n", "type": "noop", "seconds": 1}, "step 'n': only sleep steps take seconds"),
    ({"id": "n", "type": "noop", "url": "http://127.0.0.1/"},
     "step 'n': only http steps take url"),
    ({"id": "p", "type": "python:os.system"},
     "step 'p': handler 'os.system' is not registered (settings.FCORE_STEP_HANDLERS)"),
    ({"id": "p", "type": "python:runs.examples"}, "step 'p': handler 'runs.examples' is not"),
    ({"id": "p", "type": "python:runs.examples.echo()"}, "step 'p': handler"),
    ({**NOOP, "retry": 3}, "step 'n': retry must be an object {max_attempts, backoff, "),
    ({**NOOP, "retry": {"tries": 2}}, "step 'n': retry: unknown key(s) tries"),
    ({**NOOP, "retry": {"max_attempts": 0}},
     "step 'n': retry.max_attempts must be an integer from 1 to 20"),
    ({**NOOP, "retry": {"max_attempts": 21}}, "step 'n': retry.max_attempts must be"),
    ({**NOOP, "retry": {"max_attempts": "3"}}, "step 'n': retry.max_attempts must be"),
    ({**NOOP, "retry": {"max_attempts": True}}, "step 'n': retry.max_attempts must be"),
    ({**NOOP, "retry": {"backoff": -1}},
     "step 'n': retry.backoff must be a number of seconds from 0 to 3600"),
    ({**NOOP, "retry": {"backoff": 10, "max_backoff": 5}},
     "step 'n': retry.max_backoff must be a number of seconds, at least backoff"),
    ({**NOOP, "timeout_s": 0}, "step 'n': timeout_s must be a number of seconds up to 604800"),
    ({**NOOP, "timeout_s": "60"}, "step 'n': timeout_s must be a number of seconds"),
    ({"id": "a", "type": "approval", "retry": {"max_attempts": 2}},
     "step 'a': approval steps are not retried"),
    ({"id": "a", "type": "approval", "timeout_s": 60},
     "step 'a': an approval step's deadline is its gate's expires_in, not timeout_s"),
])
def test_steps_validate_refuses_bad_step_settings(settings, step, message):
    settings.FCORE_HTTP_ALLOWED_URLS = ["http://127.0.0.1", "http://localhost:8080/api/"]
    with pytest.raises(DefinitionError) as info:
        steps_validate([step])
    assert str(info.value).startswith(message)


def test_http_urls_on_the_allow_list_are_accepted_by_host_port_and_path(settings):
    settings.FCORE_HTTP_ALLOWED_URLS = ["http://127.0.0.1", "http://localhost:8080/api/"]
    for url in ("http://127.0.0.1/x", "http://127.0.0.1:9999/", "http://localhost:8080/api/v1"):
        assert steps_validate([{"id": "h", "type": "http", "url": url}])[0]["url"] == url
    for url in ("http://localhost:8081/api/v1", "http://localhost:8080/other"):
        with pytest.raises(DefinitionError, match="url must be on the allow-list"):
            steps_validate([{"id": "h", "type": "http", "url": url}])


def test_a_python_handler_is_accepted_only_while_registered(settings):
    step = {"id": "p", "type": "python:runs.examples.echo"}
    assert steps_validate([step])[0]["type"] == "python:runs.examples.echo"
    settings.FCORE_STEP_HANDLERS = ["runs.examples.flaky"]
    with pytest.raises(DefinitionError, match="handler 'runs.examples.echo' is not registered"):
        steps_validate([step])


def test_valid_retry_and_timeouts_are_stored_with_defaults_filled_in(tenant):
    steps = [{"id": "a", "type": "noop", "retry": {}},
             {"id": "b", "type": "python:runs.examples.flaky", "timeout_s": 2.5,
              "retry": {"max_attempts": 5, "backoff": 0}},
             {"id": "c", "type": "sleep", "seconds": 0, "retry": {"backoff": 2, "max_backoff": 2}}]
    definition, _ = definition_publish(tenant=tenant, name="retrying", steps=steps,
                                       actor="user:priya")
    definition.refresh_from_db()
    stored = {s["id"]: s for s in definition.steps}
    assert stored["a"]["retry"] == {"max_attempts": 3, "backoff": 1.0, "max_backoff": 60.0}
    assert stored["b"]["retry"] == {"max_attempts": 5, "backoff": 0, "max_backoff": 60.0}
    assert stored["b"]["timeout_s"] == 2.5 and "timeout_s" not in stored["a"]
    assert stored["c"] == {"id": "c", "type": "sleep", "after": ["b"], "seconds": 0,
                           "retry": {"max_attempts": 3, "backoff": 2, "max_backoff": 2}}


@pytest.mark.parametrize(("steps", "message"), [
    ([{"id": "a", "type": "noop", "after": ["b"]}, {"id": "b", "type": "noop"}],
     "the steps form a cycle: "),
    ([{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "after": ["nope"]}],
     "step 'b': after names unknown step(s) nope"),
    ([{"id": "a", "type": "noop"}, {"id": "a", "type": "noop", "after": []}],
     "step 'a': duplicate id"),
])
def test_a_bad_graph_is_refused_at_load_and_publishes_nothing(tenant, steps, message):
    with pytest.raises(DefinitionError) as info:
        definition_publish(tenant=tenant, name="graph", steps=steps, actor="user:priya")
    assert str(info.value).startswith(message)
    assert not WorkflowDefinition.objects.filter(tenant=tenant).exists()
    assert admin_events(tenant) == []
