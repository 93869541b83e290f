"""Run pages: the filtered list with progress, one run (live while it moves), cancelling.

The list reads one page of runs through `runs.selectors.runs_for_tenant`, then the step
counts of that page in one grouped query — a constant number of queries for any page size.
The run page polls its own URL while the run is not terminal and gets the `run-live`
partial; the partial of a terminal run carries no trigger, so polling stops by itself.
Cancelling calls `runs.services.run_set_status` (operators only; a reason is required).
"""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from audit.stored import events_readable
from fcore.errors import FCError, NotFound
from runs import selectors
from runs.models import RUN_TERMINAL, STEP_DONE, StepRun
from runs.services import run_set_status
from runs.verification import run_receipts_verify

from .access import (
    FOUR_EYES_TEXT,
    cancel_allowed,
    console_view,
    not_found,
    override_allowed,
    review_allowed,
    wants_partial,
)
from .filters import RunFilterForm, query_string, read_filters
from .forms import CancelRunForm
from .graph import duration_text, step_duration, step_graph_svg, timeline_svg
from .rows import gate_row, gates_with_decisions

POLL_SECONDS = 2


def step_progress(run_ids) -> dict:
    """{run_id: (done, total)} for the given runs, in one query."""
    rows = (StepRun.objects.filter(run_id__in=run_ids).values("run_id")
            .annotate(total=Count("id"), done=Count("id", filter=Q(status__in=STEP_DONE)))
            .order_by())
    return {r["run_id"]: (r["done"], r["total"]) for r in rows}


@require_safe
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
@console_view(scope="runs:read")
def run_list(request, principal):
    """Recent runs of the tenant, newest first, filtered by status and workflow."""
    form = RunFilterForm(request.GET, principal=principal)
    params = read_filters(form)
    runs = selectors.runs_for_tenant(principal.tenant, status=params.get("status") or None,
                                     workflow=params.get("workflow") or None,
                                     parent=params.get("parent") or None)
    page = Paginator(runs, params["per"]).get_page(request.GET.get("page"))
    progress = step_progress([r.run_id for r in page.object_list])
    items = [(run, *progress.get(run.run_id, (0, 0))) for run in page.object_list]
    context = {"principal": principal, "page": page, "items": items, "filter_form": form,
               "parent": params.get("parent"),
               "status": params.get("status") or "", "query": query_string(request.GET)}
    template = "console/run_list.html#run-table" if wants_partial(request) else \
        "console/run_list.html"
    return render(request, template, context)


def run_context(request, principal, run) -> dict:
    """Everything the run page shows, read fresh (also for every poll): each of the run's
    steps, decisions, gates and events once, whatever uses them."""
    steps = list(selectors.run_steps(run))
    events = events_readable(selectors.run_events(run))
    decisions = list(selectors.run_decisions(run))
    now = timezone.now()
    gates = [gate_row(g, principal, run=run)
             for g in gates_with_decisions(selectors.run_gates(run), decisions)]
    done = sum(1 for s in steps if s.status in STEP_DONE)
    children = list(selectors.run_children(run).select_related("definition")) if any(
        s.step_type == "workflow" for s in steps) else []  # only a workflow step has any
    child_of = {c.parent_step_id: c for c in children}  # oldest first: the latest attempt's
    links = {step_id: reverse("console:run", kwargs={"run_id": c.run_id})
             for step_id, c in child_of.items()}
    return {
        "principal": principal, "run": run, "steps": steps,
        "timeline": [(s, duration_text(step_duration(s, now))) for s in steps],
        "graph_svg": step_graph_svg(steps, links), "children": children,
        "timeline_svg": timeline_svg(steps, now),
        "done": done, "total": len(steps),
        "decisions": decisions, "gates": gates, "events": events,
        "receipts": run_receipts_verify(run, steps=steps, events=events),
        "live": run.status not in RUN_TERMINAL, "poll_seconds": POLL_SECONDS,
        "four_eyes_text": FOUR_EYES_TEXT,
        "can_override": override_allowed(request.user, principal.tenant),
        "can_review": review_allowed(request.user),
        "can_cancel": cancel_allowed(principal)
        and run.status not in RUN_TERMINAL,
    }


@require_safe
@vary_on_headers("HX-Request", "HX-History-Restore-Request")
@console_view(scope="runs:read")
def run_detail(request, principal, run_id: str):
    """One run: timeline, graph, decisions, gates with votes, receipts, audit events."""
    try:
        run = selectors.run_get(principal.tenant, run_id)
    except NotFound:
        return not_found(request, principal, "run")
    template = "console/run_detail.html#run-live" if wants_partial(request) else \
        "console/run_detail.html"
    return render(request, template, run_context(request, principal, run))


@require_POST
@console_view(scope="runs:read")
def run_cancel(request, principal, run_id: str):
    """Cancel a run with a reason (operators); back to the run page with a message."""
    try:
        run = selectors.run_get(principal.tenant, run_id)
    except NotFound:
        return not_found(request, principal, "run")
    url = reverse("console:run", kwargs={"run_id": run.run_id})
    if not cancel_allowed(principal):
        messages.error(request, "Only operators may cancel a run (it needs the runs:write scope).")
        return redirect(url)
    form = CancelRunForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.error_text())
        return redirect(url)
    try:
        run_set_status(tenant=principal.tenant, run_id=run.run_id, status="cancelled",
                       actor=principal.actor, reason=form.cleaned_data["reason"])
    except FCError as exc:
        messages.error(request, f"The run cannot be cancelled: {exc.detail}")
    else:
        messages.success(request, "Run cancelled.")
    return redirect(url)
