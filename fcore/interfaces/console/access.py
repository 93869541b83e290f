"""Who may see a console page, and the small helpers every console view shares.

`console_view` is the one door: sign-in, tenant membership and (optionally) a scope. Views
get the request's `Principal`; reads then go through tenant-scoped selectors, writes through
services. `wants_partial` is the history-restore guard: htmx marks a history-restore
request as an htmx request too, and it must get the full page, never a bare fragment.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect

from fcore.errors import FCError
from fcore.tenancy import RUN_STATUS_SCOPE, Principal, request_principal
from gates.models import OVERRIDE_PERMISSION, REVIEW_PERMISSION, Gate, GateStatus, Vote
from gates.services import Voter

FOUR_EYES_TEXT = "You requested this run; another approver must decide."


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


def wants_partial(request) -> bool:
    """An htmx request that is not a history restore: it gets a named partial."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def not_found(request, principal: Principal, what: str):
    """The one 404 page: unknown ids and another tenant's ids get the same answer."""
    return render(request, "console/not_found.html", {"principal": principal, "what": what},
                  status=404)


def voter_for(principal: Principal) -> Voter:
    return Voter(actor=principal.actor, groups=principal.groups)


def override_allowed(user, tenant) -> bool:
    """Whether the console offers this person break-glass on this tenant's gates."""
    return (tenant.settings.get("break_glass", True) is not False
            and user.has_perm(OVERRIDE_PERMISSION))


def review_allowed(user) -> bool:
    """Whether the console offers this person to mark overrides reviewed (never their own:
    the service refuses that, and the templates do not offer it)."""
    return user.has_perm(REVIEW_PERMISSION)


def cancel_allowed(principal: Principal) -> bool:
    """Who may cancel a run: the scope the API asks for on `PATCH …/status`
    (`fcore.tenancy.RUN_STATUS_SCOPE`; operators hold it)."""
    return principal.has_scope(RUN_STATUS_SCOPE)


def next_url(request, default: str = "console:queue") -> str:
    """The `next` form field when it points at this site, else `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        return target
    return reverse(default)


def back_to_queue(request):
    """Redirect to the queue keeping the filters the form carried (`next`)."""
    return redirect(next_url(request))


def error_text(exc: FCError) -> str:
    """A service refusal in words a person understands."""
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


def vote_message(gate: Gate, decision: str) -> str:
    """What happened after one vote."""
    name = f"gate {gate.id} ({gate.step_id or 'run'})"
    if gate.status == GateStatus.APPROVED:
        return f"Gate {gate.id} approved: the run continues."
    if gate.status == GateStatus.REJECTED:
        return f"Gate {gate.id} rejected: the run fails closed."
    approvals = gate.approvals.filter(decision=Vote.APPROVE).count()
    vote = "approval" if decision == Vote.APPROVE else "vote"
    return (f"Your {vote} of {name} is recorded: {approvals} of "
            f"{gate.required_approvals} approvals.")
