"""The OpenAPI schema and Swagger UI are served, describe every endpoint and the token."""

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_describes_every_endpoint(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = set(schema["paths"])
    for path in ["/workflows/runs", "/workflows/runs/{run_id}", "/workflows/runs/{run_id}/status",
                 "/workflows/runs/{run_id}/steps/{step_id}", "/workflows/runs/{run_id}/gates",
                 "/workflows/runs/{run_id}/gates/{gate_id}", "/workflows/runs/{run_id}/receipt",
                 "/workflows/runs/{run_id}/evidence", "/workflows/audit",
                 "/workflows/audit/verify", "/api/fc/runs", "/api/fc/runs/{run_id}"]:
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["omegaToken"]["scheme"] == "bearer"


def test_schema_generates_without_warnings(tmp_path, capsys):
    call_command("spectacular", "--file", str(tmp_path / "schema.yaml"), "--validate",
                 "--fail-on-warn")


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200 and b"swagger" in response.content.lower()
    assert b"cdn." not in response.content and b"//unpkg" not in response.content
