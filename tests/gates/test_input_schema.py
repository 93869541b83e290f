"""A gate's input_schema never reaches outside itself: remote and file references,
reference cycles and backtracking patterns are refused where a schema is saved, and a vote
on a schema stored before that check answers 400 without fetching or reading anything."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gates.models import Gate, GateStatus
from runs.bundles import BundleError, bundle_load
from runs.definitions import definition_publish
from runs.models import Run, RunStatus, WorkflowDefinition
from tests.gates.test_console import flash, login
from tests.gates.test_console import tenant as console_tenant  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

EVIL = "^(a+)+$"
LONG = "a" * 5000 + "b"  # exponential for a backtracking engine, linear for RE2


@pytest.fixture
def schema_server():
    """An HTTP server on 127.0.0.1 that serves a schema and counts the requests it got."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = json.dumps({"type": "string"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text(json.dumps({"type": "object", "title": "TOP-SECRET-CONTENT",
                                "required": ["TOP-SECRET-KEY"]}))
    return path


def request_gate(api, schema):
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine"}).json()["run_id"]
    response = api.post(f"/workflows/runs/{run_id}/gates",
                        {"reason": "check", "step_id": "step_1", "input_schema": schema})
    return run_id, response


def stored_gate(api, schema) -> tuple[str, int]:
    """A gate whose schema was stored before schemas were checked (as a pre-fix row)."""
    run_id, response = request_gate(api, {"type": "object"})
    assert response.status_code == 201, response.json()
    gate_id = response.json()["gate_id"]
    Gate.objects.filter(pk=gate_id).update(input_schema=schema)
    return run_id, gate_id


REFUSED = [
    ({"$ref": "file:///etc/passwd"}, "not allowed: only '#' or '#/…' into this schema"),
    ({"properties": {"a": {"$ref": "other.json#/x"}}}, "not allowed: only '#' or '#/…'"),
    ({"$ref": "#"}, "reference cycle that consumes no input: # → #"),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
      "$ref": "#/$defs/a"}, "reference cycle that consumes no input"),
    ({"$ref": "#/$defs/missing"}, "does not point at a subschema of this schema"),
    ({"enum": [{"$ref": "http://x/"}], "$ref": "#/enum/0"}, "does not point at a subschema"),
    ({"$ref": "#anchor"}, "not allowed: only '#' or '#/…'"),
    ({"$id": "http://127.0.0.1/base/", "$ref": "x"}, "$id at # is not allowed"),
    ({"$defs": {"a": {"$anchor": "a"}}}, "$anchor at #/$defs/a is not allowed"),
    ({"$dynamicRef": "http://127.0.0.1/x"}, "$dynamicRef 'http://127.0.0.1/x' at #"),
    ({"$schema": "http://json-schema.org/draft-07/schema#"}, "$schema at # may only be"),
    ({"properties": {"t": {"pattern": "^(?=a)"}}}, "pattern '^(?=a)' is not supported"),
    ({"patternProperties": {"(a)\\1": {}}}, "is not supported (linear-time RE2 syntax)"),
    ({"patternProperties": {"^x": {}}, "unevaluatedProperties": False},
     "unevaluatedProperties cannot be combined with patternProperties"),
    ({"type": "nope"}, "not a valid JSON Schema"),
]


@pytest.mark.parametrize(("schema", "message"), REFUSED)
def test_an_unsafe_schema_is_refused_with_a_field_error_when_a_gate_is_requested(
        api, schema, message):
    _, response = request_gate(api, schema)
    assert response.status_code == 400, response.json()
    assert message in response.json()["errors"]["input_schema"]
    assert not Gate.objects.exists()


def test_a_remote_reference_is_refused_and_never_fetched(api, schema_server):
    url, hits = schema_server
    _, response = request_gate(api, {"$ref": f"{url}/x"})
    assert response.status_code == 400
    assert "nothing is fetched" in response.json()["errors"]["input_schema"]
    assert hits == []


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"child": {"$ref": "#"}}},  # a tree: consumes input
    {"$defs": {"ticket": {"type": "string", "pattern": "^T-[0-9]+$"}},
     "properties": {"ticket": {"$ref": "#/$defs/ticket"}}},
    {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
    {"properties": {"a~b": {"type": "string"}, "c/d": {"$ref": "#/properties/a~0b"}}},
])
def test_local_references_and_recursion_that_consumes_input_are_accepted(schema):
    from gates.input_schema import input_schema_problem

    assert input_schema_problem(schema) is None


def test_an_approval_step_with_a_file_reference_is_refused_by_the_bundle(db):
    bundle = {"tenant": "tenant_new", "workflows": [{"name": "wf", "steps": [
        {"id": "sign", "type": "approval", "gate": {"input_schema": {
            "$ref": "file:///etc/passwd"}}}]}]}
    with pytest.raises(BundleError, match="workflow wf: step 'sign': gate: input_schema: "
                                          r"\$ref 'file:///etc/passwd' at # is not allowed"):
        bundle_load(bundle, actor="system:test", source="b.yaml")


def test_a_backtracking_pattern_is_evaluated_in_linear_time(api, approver):
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    run_id, response = request_gate(api, schema)
    path = f"/workflows/runs/{run_id}/gates/{response.json()['gate_id']}"
    bad = approver.patch(path, {"decision": "approve", "input": {"code": LONG}})
    assert bad.status_code == 400
    message = bad.json()["errors"]["code"]
    assert message.startswith("'aaa") and message.endswith(f"ab' does not match {EVIL!r}")
    assert " … " in message and len(message) < 520  # the 5,001 characters shortened
    ok = approver.patch(path, {"decision": "approve", "input": {"code": "a" * 5000}})
    assert ok.status_code == 200 and ok.json()["status"] == "approved"


def test_pattern_property_keys_are_evaluated_in_linear_time():
    from gates.input_schema import input_schema_errors

    schema = {"type": "object", "patternProperties": {EVIL: {"type": "integer"}},
              "additionalProperties": False}
    (message,) = input_schema_errors(schema, {LONG: 1}).values()
    assert message.startswith("Additional properties are not allowed ('aaa")
    assert message.endswith("ab' was unexpected)")
    assert input_schema_errors(schema, {"a" * 5000: "x"}) == {"a" * 5000: "'x' is not of "
                                                                         "type 'integer'"}
    assert input_schema_errors(schema, {"a" * 5000: 1}) == {}


# --- schemas stored before the check -----------------------------------------------------

def test_a_stored_remote_reference_answers_400_and_fetches_nothing(api, approver,
                                                                   schema_server):
    url, hits = schema_server
    run_id, gate_id = stored_gate(api, {"$ref": f"{url}/x"})
    response = approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}",
                              {"decision": "approve", "input": "x"})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "input_schema_unusable"
    assert hits == []
    assert Gate.objects.get(pk=gate_id).status == GateStatus.OPEN


@pytest.mark.parametrize("schema", [{"$ref": "#"}, {"$ref": "file:///etc/passwd"},
                                    {"properties": {"p": {"pattern": EVIL + "(?=x)"}}}])
def test_a_stored_unusable_schema_answers_400_and_the_gate_can_still_be_rejected(
        api, approver, schema):
    run_id, gate_id = stored_gate(api, schema)
    path = f"/workflows/runs/{run_id}/gates/{gate_id}"
    response = approver.patch(path, {"decision": "approve", "input": {"p": LONG}})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "input_schema_unusable"
    assert response.json()["detail"].startswith("This gate's input schema cannot be used: ")
    rejected = approver.patch(path, {"decision": "reject", "comment": "schema broken"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


def test_a_stored_file_reference_never_puts_the_files_content_in_the_answer(
        api, approver, secret_file):
    run_id, gate_id = stored_gate(api, {"$ref": secret_file.as_uri()})
    response = approver.patch(f"/workflows/runs/{run_id}/gates/{gate_id}",
                              {"decision": "approve", "input": {}})
    assert response.status_code == 400
    assert "TOP-SECRET" not in response.content.decode()


def test_the_console_answers_a_stored_unusable_schema_with_a_message(console_tenant,  # noqa: F811
                                                                     api, approver):
    run_id, gate_id = stored_gate(api, {"$ref": "#"})
    response = login("adam").post(f"/console/gates/{gate_id}/decide",
                                  {"decision": "approve", "input": "{}"})
    assert response.status_code in (200, 302)
    assert any("input schema cannot be used" in m for m in flash(response))
    assert Gate.objects.get(pk=gate_id).status == GateStatus.OPEN


def test_a_stored_approval_step_with_a_remote_reference_fails_the_run_closed(
        api, pt004, schema_server):
    url, hits = schema_server
    definition = definition_publish(tenant=pt004, name="signed", actor="system:test", steps=[
        {"id": "sign", "type": "approval", "gate": {"input_schema": {"type": "object"}}}])[0]
    steps = [{**definition.steps[0], "gate": {**definition.steps[0]["gate"],
                                              "input_schema": {"$ref": f"{url}/x"}}}]
    WorkflowDefinition.objects.filter(pk=definition.pk).update(steps=steps)
    response = api.post("/workflows/runs", {"workflow": "signed"})
    assert response.status_code == 201, response.content
    run = Run.objects.get(run_id=response.json()["run_id"])
    assert run.status == RunStatus.FAILED
    assert "gate settings: input_schema: $ref" in run.status_reason
    assert not Gate.objects.filter(run=run).exists() and hits == []
