"""The audit trail browser: filters, pagination at a constant query count, chain status
(also after tampering), the evidence link, htmx partials and tenant isolation."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.immutability import triggers_suspended
from audit.models import AuditEvent
from tests.gates import test_console as base
from tests.gates.test_console import HTMX, login

pytestmark = pytest.mark.django_db
tenant, make_run, fast_passwords = base.tenant, base.make_run, base.fast_passwords
other_tenant = base.other_tenant
AUDIT = "/console/audit/"


def event_ids(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li class="event-card" id="event-(\d+)">', body)]


def test_events_show_data_hash_and_prev_hash_newest_first(tenant, make_run):
    run = make_run(tenant)
    body = login("adam").get(AUDIT).content.decode()
    created = AuditEvent.objects.get(stream__name=run.stream_name, code="FC-RUN-001")
    card = body[body.index(f'id="event-{created.id}"'):]
    card = card[:card.index("</li>")]
    assert "FC-RUN-001" in card and "Workflow run created for &#x27;vendor_payment&#x27;" in card
    assert created.hash in card and created.prev_hash in card
    assert "&quot;workflow&quot;: &quot;vendor_payment&quot;" in card  # pretty JSON
    ids = event_ids(body)
    assert ids and ids == sorted(ids, reverse=True)
    assert "Streams on this page" in body and f"?stream=run%2F{run.run_id}" in body


def test_filters_by_run_code_actor_and_time(tenant, make_run):
    first, second = make_run(tenant), make_run(tenant, actor="user:otto")
    client = login("adam")
    by_run = client.get(AUDIT, {"run": str(first.run_id)}).content.decode()
    ids = set(event_ids(by_run))
    assert ids == set(AuditEvent.objects.filter(stream__name=first.stream_name)
                      .values_list("id", flat=True))
    by_code = client.get(AUDIT, {"code": "FC-GATE-001"}).content.decode()
    assert set(event_ids(by_code)) == set(AuditEvent.objects.filter(code="FC-GATE-001")
                                          .values_list("id", flat=True))
    assert len(event_ids(by_code)) == 2
    by_actor = client.get(AUDIT, {"actor": "user:otto"}).content.decode()
    assert set(event_ids(by_actor)) == set(AuditEvent.objects.filter(actor="user:otto")
                                           .values_list("id", flat=True)) != set()
    assert str(second.run_id) in by_actor and str(first.run_id) not in by_actor
    future = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert event_ids(client.get(AUDIT, {"start": future}).content.decode()) == []
    assert event_ids(client.get(AUDIT, {"end": past}).content.decode()) == []
    assert len(event_ids(client.get(AUDIT, {"start": past, "end": future,
                                            "per": 100}).content.decode())) == \
        AuditEvent.objects.filter(tenant=tenant).count()
    bad = client.get(AUDIT, {"run": "not-a-uuid", "start": "yesterday"})
    assert bad.status_code == 200 and b"(ignored)" in bad.content


def test_pages_cost_a_constant_number_of_queries(tenant, make_run):
    for _ in range(4):
        make_run(tenant)
    client = login("adam")
    total = AuditEvent.objects.filter(tenant=tenant).count()
    assert total > 25
    counts = {}
    for per in (25, 100):
        with CaptureQueriesContext(connection) as ctx:
            body = client.get(AUDIT, {"per": per}).content.decode()
        counts[per] = len(ctx.captured_queries)
        assert len(event_ids(body)) == min(per, total)
    assert counts[25] == counts[100]
    page2 = client.get(AUDIT, {"per": 25, "page": 2}).content.decode()
    assert not set(event_ids(page2)) & set(event_ids(client.get(AUDIT, {"per": 25})
                                                     .content.decode()))
    assert "Page 2 of" in page2


def test_one_stream_in_scope_shows_whether_its_chain_verifies(tenant, make_run):
    run = make_run(tenant)
    body = login("adam").get(AUDIT, {"run": str(run.run_id)}).content.decode()
    assert 'class="chain chain-ok"' in body and '<span class="badge badge-ok">verifies' in body
    assert f"/console/runs/{run.run_id}/evidence.json" in body
    by_stream = login("adam").get(AUDIT, {"stream": run.stream_name}).content.decode()
    assert '<span class="badge badge-ok">verifies' in by_stream
    admin = login("adam").get(AUDIT, {"stream": "tenant/tenant_omega/admin"}).content.decode()
    assert '<span class="badge badge-ok">verifies' in admin


def test_a_tampered_chain_shows_as_not_verified(tenant, make_run):
    run = make_run(tenant)
    event = AuditEvent.objects.filter(stream__name=run.stream_name).order_by("seq")[1]
    with triggers_suspended(connection), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = %s WHERE id = %s",
                       ["client:mallory", event.id])
    body = login("adam").get(AUDIT, {"run": str(run.run_id)}).content.decode()
    assert 'class="chain chain-bad"' in body and "does NOT verify" in body
    assert f"seq {event.seq}: hash does not match content" in body


def test_htmx_gets_the_results_partial_and_a_restore_the_page(tenant, make_run):
    run = make_run(tenant)
    client = login("adam")
    partial = client.get(AUDIT, {"run": str(run.run_id)}, **HTMX)
    body = partial.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<div id="audit-results">')
    assert "HX-Request" in partial["Vary"]
    restored = client.get(AUDIT, {"run": str(run.run_id)}, HTTP_HX_REQUEST="true",
                          HTTP_HX_HISTORY_RESTORE_REQUEST="true").content.decode()
    assert "<html" in restored and 'id="audit-results"' in restored
    page = client.get(AUDIT).content.decode()
    assert 'hx-push-url="true"' in page and "<script>" not in page and " style=" not in page
    for name in ("run", "code", "actor", "start", "end", "per", "stream"):
        assert f'<label for="id_{name}">' in page


def test_another_tenants_events_and_chains_are_invisible(tenant, other_tenant, make_run):
    run = make_run(tenant)
    client = login("oscar")
    everything = client.get(AUDIT, {"per": 100}).content.decode()
    assert str(run.run_id) not in everything
    assert not set(event_ids(everything)) & set(
        AuditEvent.objects.filter(tenant=tenant).values_list("id", flat=True))
    by_run = client.get(AUDIT, {"run": str(run.run_id)}).content.decode()
    assert event_ids(by_run) == [] and 'class="chain' not in by_run
    assert "No stream" in by_run
    by_stream = client.get(AUDIT, {"stream": run.stream_name}).content.decode()
    assert event_ids(by_stream) == [] and 'class="chain' not in by_stream


def test_the_whole_trail_is_verified_in_the_background_from_the_page(
        tenant, other_tenant, make_run, django_capture_on_commit_callbacks):
    run = make_run(tenant)
    client = login("adam")
    assert "No verification of every chain and checkpoint has run yet" in \
        client.get(AUDIT).content.decode()
    assert client.get("/console/audit/verify").status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post("/console/audit/verify", follow=True)
        pending = started.content.decode()  # the task runs once the request has committed
    assert started.redirect_chain == [("/console/audit/", 302)]
    assert "started: this page shows its result when it is done" in pending
    assert '<span class="badge">pending</span>' in pending
    body = client.get(AUDIT).content.decode()
    events = AuditEvent.objects.filter(tenant=tenant).count()
    assert '<span class="badge badge-ok">every chain verifies</span>' in body
    assert f"{events} events" in body and "asked by user:adam" in body
    event = AuditEvent.objects.filter(stream__name=run.stream_name).order_by("seq")[1]
    with triggers_suspended(connection), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = %s WHERE id = %s",
                       ["client:mallory", event.id])
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/console/audit/verify")
    body = client.get(AUDIT).content.decode()
    assert "does NOT verify" in body
    assert f"<code>{run.stream_name}</code> seq {event.seq}: hash does not match content" in body
    other = login("oscar").get(AUDIT).content.decode()  # another tenant sees none of it
    assert "No verification of every chain and checkpoint has run yet" in other
