"""The audit trail browser: the tenant's events, filtered and paginated, with chain checks.

Events come from `runs.selectors.events_for_tenant` (tenant-scoped there): another tenant's
run id simply matches nothing. Filters are GET parameters (run, stream, code, actor, a
time range). When the filters narrow the page to one stream, that stream's chain is
re-walked with `audit.verify.audit_verify_stream` (every hash recomputed, no checkpoint
checks) and the page says whether it verifies; other pages link to each stream's check.
A page costs a constant number of queries (count, page, and the one stream's walk).

The whole trail (every chain and checkpoint of the tenant) is verified in the background:
the page shows the latest `AuditVerification` and a button that starts one
(`audit_verify_start`, the same service as `POST /workflows/audit/verify`).
"""

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from audit.stored import events_readable
from audit.verifications import audit_verification_request, audit_verifications_for_tenant
from audit.verify import audit_verify_stream
from runs import selectors

from .access import console_view, wants_partial
from .filters import AuditFilterForm, query_string, read_filters

RUN_PREFIX = "run/"


def run_id_of(stream_name: str) -> str | None:
    return stream_name[len(RUN_PREFIX):] if stream_name.startswith(RUN_PREFIX) else None


def events_filtered(tenant, params: dict):
    run_id = str(params["run"]) if params.get("run") else None
    events = selectors.events_for_tenant(tenant, stream=params.get("stream") or None,
                                         code=params.get("code") or None,
                                         actor=params.get("actor") or None, run_id=run_id)
    if params.get("start"):
        events = events.filter(occurred_at__gte=params["start"])
    if params.get("end"):
        events = events.filter(occurred_at__lte=params["end"])
    return events.order_by("-occurred_at", "-id")


def chain_status(tenant, stream_name: str | None) -> dict | None:
    """The verification of one of the tenant's streams, or None when there is none."""
    if not stream_name:
        return None
    stream = selectors.streams_for_tenant(tenant).filter(name=stream_name).first()
    if stream is None:
        return None
    report = audit_verify_stream(stream)
    return {"stream": stream.name, "ok": report.ok, "events": report.events,
            "head_seq": stream.head_seq, "head_hash": stream.head_hash,
            "failures": report.failures, "run_id": run_id_of(stream.name)}


@require_safe
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
@console_view(scope="audit:read")
def audit_trail(request, principal):
    """Browse the tenant's audit events; one stream in scope → its chain is verified."""
    form = AuditFilterForm(request.GET)
    params = read_filters(form)
    events = events_filtered(principal.tenant, params)
    page = Paginator(events, params["per"]).get_page(request.GET.get("page"))
    events = events_readable(page.object_list)
    items = [(e, f"Unreadable: {e.unreadable}" if e.unreadable else
              json.dumps(e.data, indent=2, sort_keys=True, ensure_ascii=False))
             for e in events]
    streams = list(dict.fromkeys(e.stream.name for e in events))
    single = (f"{RUN_PREFIX}{params['run']}" if params.get("run")
              else params.get("stream") or None)
    context = {
        "principal": principal, "filter_form": form, "page": page, "items": items,
        "streams": [(name, run_id_of(name)) for name in streams],
        "chain": chain_status(principal.tenant, single), "single": single,
        "query": query_string(request.GET),
        "verification": audit_verifications_for_tenant(principal.tenant.id).first(),
    }
    template = "console/audit.html#audit-results" if wants_partial(request) else \
        "console/audit.html"
    return render(request, template, context)


@require_POST
@console_view(scope="audit:read")
def audit_verify_start(request, principal):
    """Start a background verification of every chain of the tenant (or show the one in
    progress), then back to the audit page."""
    verification, created = audit_verification_request(tenant_id=principal.tenant.id,
                                                       actor=principal.actor)
    messages.info(request, f"Verification {verification.pk} "
                           f"{'started' if created else 'is already in progress'}: "
                           "this page shows its result when it is done.")
    return redirect("console:audit")
