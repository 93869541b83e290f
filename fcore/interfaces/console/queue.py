"""The approver's live queue and deciding one gate in place.

The queue is a GET page whose filters are query parameters (bookmarkable); htmx polls the
same URL with the same parameters and receives the `queue-response` partial (title, list,
messages out of band). A vote is a POST to `gate_decide`: without JavaScript it redirects
back to the queue it came from (`next`), with htmx it answers the refreshed partial for the
filters of the page it was sent from (`HX-Current-URL`).
"""

from urllib.parse import urlsplit

from django.contrib import messages
from django.http import QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from fcore.errors import FCError, NotFound
from fcore.tenancy import Principal
from runs import selectors
from runs.services import run_gate_vote

from .access import (
    FOUR_EYES_TEXT,
    back_to_queue,
    console_view,
    error_text,
    not_found,
    review_allowed,
    vote_message,
    voter_for,
    wants_partial,
)
from .filters import QueueFilterForm, query_string, read_filters
from .forms import GateDecisionForm
from .rows import queue_page, review_rows


def render_queue(request, principal: Principal, data: QueryDict, *, partial: bool):
    """The queue page (or its `queue-response` partial) for the filters in `data`."""
    form = QueueFilterForm(data, principal=principal)
    params = read_filters(form)
    params["page"] = data.get("page")
    page = queue_page(principal, params)
    query = query_string(data)
    full_query = query_string(data, drop=())
    queue_url = reverse("console:queue")
    context = {
        "principal": principal, "rows": page.rows, "page": page.page, "count": page.total,
        "matching": page.matching, "filter_form": form, "query": query,
        "filtered": page.matching != page.total,
        "here": f"{queue_url}?{full_query}" if full_query else queue_url,
        "review_rows": review_rows(principal, request.user),
        "can_review": review_allowed(request.user),
        "four_eyes_text": FOUR_EYES_TEXT, "in_queue": True,
    }
    template = "console/queue.html#queue-response" if partial else "console/queue.html"
    return render(request, template, context)


@require_safe
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
@console_view
def queue(request, principal):
    """The signed-in person's open gates; htmx polls the `queue-response` partial."""
    return render_queue(request, principal, request.GET, partial=wants_partial(request))


def current_query(request) -> QueryDict:
    """The query string of the page an htmx request was sent from."""
    url = request.htmx.current_url if request.htmx else ""
    return QueryDict(urlsplit(url or "").query)


@require_POST
@vary_on_headers("HX-Request")
@console_view
def gate_decide(request, principal, gate_id: int):
    """Approve or reject a gate. Without JavaScript: redirect back with a message; with htmx:
    the refreshed queue partial, the message swapped in out of band."""
    try:
        gate = selectors.gate_get(principal.tenant, gate_id)
    except NotFound:  # unknown, or another tenant's: the same 404, nothing else said
        return not_found(request, principal, "gate")
    form = GateDecisionForm(request.POST, schema=gate.input_schema)
    try:
        if not form.is_valid():
            messages.error(request, form.error_text())
        else:
            decision = form.cleaned_data["decision"]
            gate = run_gate_vote(
                tenant=principal.tenant, run_id=gate.run_id, gate_id=gate.id,
                voter=voter_for(principal), decision=decision,
                comment=form.cleaned_data["comment"], data=form.cleaned_data["input"])
            messages.success(request, vote_message(gate, decision))
    except FCError as exc:
        messages.error(request, error_text(exc))
    if wants_partial(request):
        return render_queue(request, principal, current_query(request), partial=True)
    return back_to_queue(request)
