"""Events a server stored before the input limits — data nested 600–980 deep, which
Python's recursion limit stops readers from hashing — cannot be deleted. Every reader reports such
an event, naming its stream and seq, instead of crashing: the chain verification (API and
command), the evidence pack and its offline verifier, and the console."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit.hashing import format_at
from audit.models import AuditEvent, AuditStream
from audit.stored import stored_value
from audit.verify import audit_verify
from audit.verify_pack import Failure, main, verify_pack
from fcore.interfaces.api.evidence import evidence_pack
from runs.models import Run
from tests.gates import test_console as base
from tests.gates.test_console import login

pytestmark = pytest.mark.django_db
tenant, make_run, fast_passwords = base.tenant, base.make_run, base.fast_passwords



def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def insert_stored_event(stream_name: str, data_text: str) -> int:
    """Append an event the way a server without the limits did; returns its seq. Only
    INSERT: the immutability triggers refuse changing or deleting events, not adding."""
    stream = AuditStream.objects.get(name=stream_name)
    seq, now = stream.head_seq + 1, timezone.now()
    cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (stream_id, tenant_id, seq, code, actor, at, "
            f"occurred_at, data, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, {cast}, "
            "%s, %s)",
            [stream.id, stream.tenant_id, seq, "FC-GATE-002", "user:mallory", format_at(now),
             now, data_text, stream.head_hash, "e" * 64])
    AuditStream.objects.filter(pk=stream.pk).update(head_seq=seq, head_hash="e" * 64)
    return seq


@pytest.fixture(params=[600, 980])
def broken_run(tenant, make_run, request):
    """A run whose stream holds a vote input nested as deep as a server without the limit
    accepted (600–980 levels; Django's own JSON decoding fails on the deepest)."""
    run = make_run(tenant)
    seq = insert_stored_event(run.stream_name, '{"gate_id": 1, "vote": "approve", "input": '
                              + nested(request.param) + "}")
    return Run.objects.get(pk=run.pk), seq


def test_verify_reports_the_event_instead_of_crashing(tenant, broken_run):
    run, seq = broken_run
    report = audit_verify(tenant_ids=[tenant.id], checkpoints=False)
    assert not report.ok
    (failure,) = report.failures
    assert failure["stream"] == run.stream_name and failure["seq"] == seq
    assert "cannot be canonicalised" in failure["problem"]


def test_the_audit_verify_command_names_the_event(broken_run, capsys):
    run, seq = broken_run
    with pytest.raises(CommandError, match="chain failure"):
        call_command("audit_verify")
    assert f"{run.stream_name}#{seq}" in capsys.readouterr().out


def test_the_pack_is_produced_and_the_verifier_names_the_event(broken_run, tmp_path,
                                                               capsys):
    run, seq = broken_run
    pack = evidence_pack(run)
    index = seq - 1
    event = pack["events"][index]
    assert event["seq"] == seq and event["data"] is None
    assert "nested deeper" in event["unreadable"]["data"]
    with pytest.raises(Failure, match=rf"events\[{index}\]\.data: unreadable"):
        verify_pack(json.loads(json.dumps(pack)))
    path = tmp_path / "pack.json"
    path.write_text(json.dumps(pack))
    assert main([str(path)]) == 1
    assert f"FAILED events[{index}].data: unreadable" in capsys.readouterr().out


def test_the_offline_verifier_refuses_a_file_too_deep_to_parse(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text(nested(100_000))
    assert main([str(path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_console_shows_the_event_as_unreadable(broken_run):
    run, seq = broken_run
    client = login("adam")
    audit = client.get("/console/audit/", {"run": str(run.run_id)})
    assert audit.status_code == 200
    event = AuditEvent.objects.only("id").get(stream__name=run.stream_name, seq=seq)
    card = audit.content.decode().split(f'id="event-{event.id}"')[1].split("</li>")[0]
    assert "Unreadable: nested deeper than" in card
    assert "does NOT verify" in audit.content.decode()
    page = client.get(f"/console/runs/{run.run_id}/")
    assert page.status_code == 200
    assert "unreadable</span> nested deeper than" in page.content.decode()


@pytest.mark.parametrize("text", ['{"a": "\\ud800"}', '{"\\udbff": 1}', nested(2000),
                                  '{"n": 1' + "0" * 400 + "}"])
def test_stored_values_that_cannot_be_hashed_are_named(text):
    value, problem = stored_value(text)
    assert value is None and problem


def test_readable_values_come_back_as_stored():
    assert stored_value('{"a": [1, 2.5, "☃"], "big": 1e21}') == (
        {"a": [1, 2.5, "☃"], "big": 1e21}, None)


def test_the_api_reports_the_event_instead_of_a_500(api, broken_run):
    run, seq = broken_run
    verify = api.get("/workflows/audit/verify")
    assert verify.status_code == 200
    assert verify.json()["ok"] is False
    assert {"stream": run.stream_name, "seq": seq} in [
        {k: f[k] for k in ("stream", "seq")} for f in verify.json()["failures"]]
    evidence = api.get(f"/workflows/runs/{run.run_id}/evidence")
    assert evidence.status_code == 200
    assert evidence.json()["events"][seq - 1]["unreadable"]
    listed = api.get(f"/workflows/audit?run_id={run.run_id}")
    assert listed.status_code == 200
    (event,) = [e for e in listed.json()["results"] if e["seq"] == seq]
    assert event["data"] is None and "nested deeper" in event["unreadable"]["data"]
    logs = api.get(f"/workflows/runs/{run.run_id}?include_logs=true")
    assert logs.status_code == 200
    assert logs.json()["logs"][seq - 1]["unreadable"]
    assert all("unreadable" not in e for e in logs.json()["logs"][:seq - 1])


def test_a_vote_a_server_without_the_limit_accepted_is_reported_everywhere(api, approver,
                                                                          settings):
    """The whole of what such a vote left: the approval row and its FC-GATE-002 event."""
    run_id = api.post("/workflows/runs", {"workflow": "pt004_execution_spine",
                                          "input": {"amount": 25000}}).json()["run_id"]
    api.patch(f"/workflows/runs/{run_id}/steps/step_1", {"status": "succeeded"})
    gate_id = api.get(f"/workflows/runs/{run_id}/gates").json()[0]["gate_id"]
    settings.FCORE_JSON_MAX_DEPTH = 1000  # as before the limit
    vote = approver.call("PATCH", f"/workflows/runs/{run_id}/gates/{gate_id}",
                         raw='{"decision": "approve", "input": ' + nested(600) + "}")
    assert vote.status_code == 200
    settings.FCORE_JSON_MAX_DEPTH = 64
    verify = api.get("/workflows/audit/verify").json()
    assert not verify["ok"]
    assert [f["stream"] for f in verify["failures"]] == [f"run/{run_id}"]
    pack = api.get(f"/workflows/runs/{run_id}/evidence")
    assert pack.status_code == 200
    (vote_row,) = pack.json()["gates"][0]["approvals"]
    assert vote_row["input"] is None and vote_row["unreadable"]["input"]
    with pytest.raises(Failure, match=r"events\[\d+\]\.data: unreadable"):
        verify_pack(pack.json())
    assert api.get(f"/workflows/runs/{run_id}?include_logs=true").status_code == 200
