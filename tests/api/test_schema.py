"""The OpenAPI schema at /api/schema/: served, valid, and readable by people and agents —
every operation has a summary, a declared tag and examples, every field and parameter a
description, errors their real bodies; the /api/fc alias is served but not described."""

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate

from fcore.interfaces.api.schema import error_responses

pytestmark = pytest.mark.django_db

# status → the component its body must be (fcore.interfaces.api.schema)
ERROR_COMPONENTS = {"400": "ValidationError", "409": "ConflictError"}
PLAIN_ERROR = "Error"
METHODS = {"get", "post", "put", "patch", "delete"}


def served_schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def _ref_name(media: dict) -> str | None:
    ref = media.get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else None


def operation_problems(schema: dict) -> list[str]:
    """What an operation lacks: summary, a declared tag, request and answer examples,
    described parameters, error bodies of their real shape."""
    declared = {tag["name"] for tag in schema.get("tags", []) if tag.get("description")}
    problems = []
    for name, op in operations(schema):
        if not op.get("summary"):
            problems.append(f"{name}: no summary")
        if not op.get("tags") or not set(op["tags"]) <= declared:
            problems.append(f"{name}: tags {op.get('tags')} not among the declared {declared}")
        for parameter in op.get("parameters", []):
            if not parameter.get("description"):
                problems.append(f"{name}: parameter {parameter['name']} has no description")
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            if not media.get("examples"):
                problems.append(f"{name}: request {media_type} has no example")
        for status, answer in op.get("responses", {}).items():
            for media_type, media in answer.get("content", {}).items():
                if not media.get("examples"):
                    problems.append(f"{name}: answer {status} {media_type} has no example")
                if status.startswith("4"):
                    expected = ERROR_COMPONENTS.get(status, PLAIN_ERROR)
                    if _ref_name(media) != expected:
                        problems.append(f"{name}: answer {status} is {media.get('schema')}, "
                                        f"not the {expected} component")
    return problems


def _property_problems(schema, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return []
    problems = []
    for key, prop in (schema.get("properties") or {}).items():
        if not prop.get("description"):
            problems.append(f"{where}.{key}: no description")
        problems += _property_problems(prop, f"{where}.{key}")
    for key in ("items", "additionalProperties"):
        problems += _property_problems(schema.get(key), f"{where}[]")
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            problems += _property_problems(part, where)
    return problems


def field_problems(schema: dict) -> list[str]:
    """Every property of every component and of every inline body lacking a description."""
    problems = []
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        problems += _property_problems(component, name)
    for name, op in operations(schema):
        bodies = [op.get("requestBody", {})] + list(op.get("responses", {}).values())
        for body in bodies:
            for media in body.get("content", {}).values():
                problems += _property_problems(media.get("schema"), name)
    return problems


# --- the schema as served ----------------------------------------------------------------

def test_schema_describes_every_endpoint(client):
    schema = served_schema(client)
    paths = set(schema["paths"])
    for path in ["/workflows/runs", "/workflows/runs/{run_id}", "/workflows/runs/{run_id}/status",
                 "/workflows/runs/{run_id}/steps/{step_id}", "/workflows/runs/{run_id}/gates",
                 "/workflows/runs/{run_id}/gates/{gate_id}", "/workflows/runs/{run_id}/receipt",
                 "/workflows/runs/{run_id}/evidence", "/workflows/audit",
                 "/workflows/audit/verify"]:
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["omegaToken"]["scheme"] == "bearer"


def test_every_operation_has_summary_tag_examples_and_real_errors(client):
    assert operation_problems(served_schema(client)) == []


def test_every_field_and_parameter_is_described(client):
    assert field_problems(served_schema(client)) == []


def test_error_components_carry_their_context(client):
    components = served_schema(client)["components"]["schemas"]
    for name in ("Error", "ValidationError", "ConflictError"):
        assert {"code", "detail"} <= set(components[name]["properties"])
        assert components[name]["required"] == ["code", "detail"]
    assert "errors" in components["ValidationError"]["properties"]
    conflict = components["ConflictError"]["properties"]
    assert conflict["current"]["type"] == "string"
    assert conflict["allowed"] == {**conflict["allowed"], "type": "array",
                                   "items": {"type": "string"}}


def test_the_alias_is_served_but_not_described(client, api):
    assert not [p for p in served_schema(client)["paths"] if p.startswith("/api/fc")]
    answer = api.post("/api/fc/runs", {"workflow": "pt004_execution_spine", "input": {}})
    assert answer.status_code == 201
    assert api.get(f"/api/fc/runs/{answer.json()['run_id']}").status_code == 200


def test_schema_generates_without_warnings(tmp_path, capsys):
    call_command("spectacular", "--file", str(tmp_path / "schema.yaml"), "--validate",
                 "--fail-on-warn")


def test_schema_is_valid_openapi(client):
    validate(served_schema(client))  # openapi-spec-validator: raises on an invalid document


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200 and b"swagger" in response.content.lower()
    assert b"cdn." not in response.content and b"//unpkg" not in response.content


# --- the rules themselves catch what they name -------------------------------------------

BROKEN = {
    "tags": [{"name": "runs", "description": "Runs."}, {"name": "bare"}],
    "paths": {"/x/{x_id}": {"post": {
        "tags": ["bare"],
        "parameters": [{"name": "x_id", "in": "path"}],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "201": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "409": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}, "examples": {"e": {}}}}},
        }}}},
    "components": {"schemas": {"Thing": {"type": "object", "properties": {
        "named": {"type": "string", "description": "Described."},
        "bare": {"type": "object", "properties": {"inner": {"type": "integer"}}}}}}},
}


def test_operation_rules_catch_each_gap():
    assert operation_problems(BROKEN) == [
        "POST /x/{x_id}: no summary",
        "POST /x/{x_id}: tags ['bare'] not among the declared {'runs'}",
        "POST /x/{x_id}: parameter x_id has no description",
        "POST /x/{x_id}: request application/json has no example",
        "POST /x/{x_id}: answer 201 application/json has no example",
        "POST /x/{x_id}: answer 409 is {'$ref': '#/components/schemas/Error'}, not the "
        "ConflictError component",
    ]


def test_field_rules_catch_undescribed_properties_at_any_depth():
    assert field_problems(BROKEN) == ["Thing.bare: no description",
                                      "Thing.bare.inner: no description"]


def test_error_responses_declares_each_status_with_its_shape():
    answers = error_responses(400, 401, 409)
    assert list(answers) == [400, 401, 409]
    assert answers[400].response.__name__ == "ValidationErrorOut"
    assert answers[409].response.__name__ == "ConflictErrorOut"
    assert answers[401].response.__name__ == "ErrorOut"
    assert all(answer.description and answer.examples for answer in answers.values())
    with pytest.raises(ValueError, match="418"):
        error_responses(418)
