"""The approval console: a person's queue of open gates, voting on them, and run pages.

Views are interfaces only: reads go through `runs.selectors` (tenant-scoped there), writes
go through `runs.services` (`run_gate_vote`; break-glass and email links are in
`gate_views`). Every page works without JavaScript;
with htmx the queue polls a named partial of its own template (`queue.html#queue-response`)
and a vote swaps that partial in place. A history-restore request is an htmx request that
needs the full page, so `_wants_partial` checks for it.
"""

from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from fcore.errors import FCError, NotFound
from fcore.tenancy import Principal, request_principal
from gates.models import Gate, GateStatus, Vote
from gates.services import Voter
from runs import selectors
from runs.models import RunStatus
from runs.services import run_gate_vote

from .forms import GateDecisionForm

FOUR_EYES_TEXT = "You requested this run; another approver must decide."
RUNS_PER_PAGE = 50
OVERRIDE_PERMISSION = "gates.override_gate"


# --- access --------------------------------------------------------------------------------

def console_view(view=None, *, scope: str | None = None):
    """Sign-in required; the view gets the request's `Principal` as second argument.

    Not signed in → the login page (through `HX-Redirect` for an htmx request, so a poll
    never swaps a login form into the page). A person without a tenant membership, or
    without `scope`, gets a page that says so (403), not an error.
    """

    def decorate(func):
        @wraps(func)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                if request.htmx:
                    next_url = request.htmx.current_url_abs_path or request.get_full_path()
                    return HttpResponseClientRedirect(redirect_to_login(next_url).url)
                return redirect_to_login(request.get_full_path())
            principal = request_principal(request)
            if principal is None:
                return render(request, "console/forbidden.html",
                              {"reason": "no_membership"}, status=403)
            if scope and not principal.has_scope(scope):
                return render(request, "console/forbidden.html",
                              {"reason": "scope", "scope": scope, "principal": principal},
                              status=403)
            return func(request, principal, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def _voter(principal: Principal) -> Voter:
    return Voter(actor=principal.actor, groups=principal.groups)


def override_allowed(user, tenant) -> bool:
    """Whether the console offers this person break-glass on this tenant's gates."""
    return (tenant.settings.get("break_glass", True) is not False
            and user.has_perm(OVERRIDE_PERMISSION))


def _wants_partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


def _not_found(request, principal: Principal, what: str):
    return render(request, "console/not_found.html", {"principal": principal, "what": what},
                  status=404)


# --- gate rows -----------------------------------------------------------------------------

@dataclass(frozen=True)
class GateRow:
    """A gate as one person sees it: progress, their own vote, and whether four-eyes
    keeps them from deciding."""

    gate: Gate
    approvals: int
    my_vote: str | None
    four_eyes: bool
    may_vote: bool

    @property
    def can_decide(self) -> bool:
        return (self.gate.status == GateStatus.OPEN and self.may_vote and not self.four_eyes
                and self.my_vote is None)


def gate_row(gate: Gate, principal: Principal, *, run=None) -> GateRow:
    """Uses the prefetched `approvals` of the selectors' querysets; `run` saves a query
    when the caller already holds the gate's run."""
    run = run or gate.run
    votes = list(gate.approvals.all())
    mine = next((v.decision for v in votes if v.actor == principal.actor), None)
    return GateRow(
        gate=gate,
        approvals=sum(1 for v in votes if v.decision == Vote.APPROVE),
        my_vote=mine,
        four_eyes=principal.actor in {gate.requested_by, run.created_by},
        may_vote=_voter(principal).may_vote(gate),
    )


def queue_rows(principal: Principal) -> list[GateRow]:
    """The open gates of the person's tenant that their groups may decide."""
    voter = _voter(principal)
    gates = selectors.gates_open_for_tenant(principal.tenant)
    return [gate_row(g, principal) for g in gates if voter.may_vote(g)]


def review_rows(principal: Principal, user) -> list[GateRow]:
    """Overridden gates still marked for review that this person's groups could have
    decided (everyone with the override permission sees them all)."""
    voter = _voter(principal)
    everyone = user.has_perm(OVERRIDE_PERMISSION)
    gates = selectors.gates_needing_review(principal.tenant)
    return [gate_row(g, principal) for g in gates if everyone or voter.may_vote(g)]


# --- queue ---------------------------------------------------------------------------------

def _render_queue(request, principal: Principal, *, partial: bool):
    rows = queue_rows(principal)
    context = {"principal": principal, "rows": rows, "count": len(rows),
               "review_rows": review_rows(principal, request.user),
               "four_eyes_text": FOUR_EYES_TEXT, "in_queue": True}
    template = "console/queue.html#queue-response" if partial else "console/queue.html"
    return render(request, template, context)


@require_safe
@vary_on_headers("HX-Request")
@console_view
def queue(request, principal):
    """The signed-in person's open gates; htmx polls the `queue-response` partial."""
    return _render_queue(request, principal, partial=_wants_partial(request))


def _error_text(exc: FCError) -> str:
    if exc.code == "four_eyes":
        return FOUR_EYES_TEXT
    if exc.code == "invalid_transition":
        return f"This gate is no longer open: it is {exc.context.get('current', 'closed')}."
    if exc.code == "already_voted":
        return "You have already voted on this gate."
    if exc.code == "invalid_input":
        errors = exc.context.get("errors") or {}
        listed = "; ".join(f"{k}: {v}" for k, v in errors.items()) if isinstance(
            errors, dict) else str(errors)
        return f"{exc.detail} {listed}".strip()
    return exc.detail


def _vote_message(gate: Gate, decision: str) -> str:
    name = f"gate {gate.id} ({gate.step_id or 'run'})"
    if gate.status == GateStatus.APPROVED:
        return f"Gate {gate.id} approved: the run continues."
    if gate.status == GateStatus.REJECTED:
        return f"Gate {gate.id} rejected: the run fails closed."
    approvals = gate.approvals.filter(decision=Vote.APPROVE).count()
    vote = "approval" if decision == Vote.APPROVE else "vote"
    return (f"Your {vote} of {name} is recorded: {approvals} of "
            f"{gate.required_approvals} approvals.")


def _next_url(request) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        return target
    return reverse("console:queue")


@require_POST
@vary_on_headers("HX-Request")
@console_view
def gate_decide(request, principal, gate_id: int):
    """Approve or reject a gate. Without JavaScript: redirect back with a message; with htmx:
    the refreshed queue partial, the message swapped in out of band."""
    form = GateDecisionForm(request.POST)
    try:
        gate = selectors.gate_get(principal.tenant, gate_id)
    except NotFound:  # unknown, or another tenant's: the same 404, nothing else said
        return _not_found(request, principal, "gate")
    try:
        if not form.is_valid():
            messages.error(request, form.error_text())
        else:
            decision = form.cleaned_data["decision"]
            gate = run_gate_vote(
                tenant=principal.tenant, run_id=gate.run_id, gate_id=gate.id,
                voter=_voter(principal), decision=decision,
                comment=form.cleaned_data["comment"], data=form.cleaned_data["input"])
            messages.success(request, _vote_message(gate, decision))
    except FCError as exc:
        messages.error(request, _error_text(exc))
    if _wants_partial(request):
        return _render_queue(request, principal, partial=True)
    return redirect(_next_url(request))


# --- runs ----------------------------------------------------------------------------------

@require_safe
@console_view(scope="runs:read")
def run_list(request, principal):
    """Recent runs of the tenant, newest first, optionally filtered by status."""
    status = request.GET.get("status", "")
    if status not in RunStatus.values:
        status = ""
    runs = selectors.runs_for_tenant(principal.tenant, status=status or None)
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "console/run_list.html", {
        "principal": principal, "page": page, "status": status,
        "statuses": RunStatus.choices,
    })


@require_safe
@console_view(scope="runs:read")
def run_detail(request, principal, run_id: str):
    """One run: status, steps with receipts, decisions, gates with votes, audit events."""
    try:
        run = selectors.run_get(principal.tenant, run_id)
    except NotFound:
        return _not_found(request, principal, "run")
    gates = [gate_row(g, principal, run=run) for g in selectors.run_gates(run)]
    return render(request, "console/run_detail.html", {
        "principal": principal, "run": run,
        "steps": selectors.run_steps(run),
        "decisions": selectors.run_decisions(run),
        "gates": gates,
        "events": selectors.run_events(run),
        "four_eyes_text": FOUR_EYES_TEXT,
        "can_override": override_allowed(request.user, principal.tenant),
    })
