"""Console pages for break-glass overrides and one-click email links.

- `gate_override` (POST): a person with the `gates.override_gate` permission forces an open
  gate through with a justification (`runs.services.run_gate_override`).
- `gate_override_review` (POST): a person with the `gates.review_override` permission, not
  the one who overrode it, marks the override reviewed with a note
  (`runs.services.run_gate_override_review`).
- `gate_review` (GET, POST): the page an email link opens. The link's token must be valid,
  unexpired, unused and bound to the signed-in person. GET only shows the gate and the
  decision form and never writes anything; the POST votes through
  `runs.services.run_gate_vote(..., link=claim)`, which uses the link up in the vote's
  transaction.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from fcore.errors import FCError, NotFound
from gates.models import GateStatus
from gates.notify.links import LinkRefused, link_token_read
from runs import selectors
from runs.services import run_gate_override, run_gate_override_review, run_gate_vote

from .access import (
    FOUR_EYES_TEXT,
    console_view,
    error_text,
    next_url,
    not_found,
    vote_message,
    voter_for,
)
from .forms import GateDecisionForm, GateOverrideForm, OverrideReviewForm
from .rows import gate_row

LINK_STATUS = {"link_invalid": 400, "link_wrong_user": 403, "link_expired": 410,
               "link_used": 410}


def _gate_form_posted(request, principal, gate_id: int, form, act):
    """A form posted about one gate: the same 404 for an unknown or another tenant's gate;
    otherwise the form's or the service's refusal, or the message `act(gate, cleaned_data)`
    returns as (level, text); then back to the page it came from."""
    try:
        gate = selectors.gate_get(principal.tenant, gate_id)
    except NotFound:
        return not_found(request, principal, "gate")
    try:
        if not form.is_valid():
            messages.error(request, form.error_text())
        else:
            messages.add_message(request, *act(gate, form.cleaned_data))
    except FCError as exc:
        messages.error(request, exc.detail)
    return redirect(next_url(request))


@require_POST
@console_view
def gate_override(request, principal, gate_id: int):
    """Break-glass from the run page; back to the page with a message either way."""

    def act(gate, data):
        gate = run_gate_override(
            tenant=principal.tenant, run_id=gate.run_id, gate_id=gate.id,
            actor=principal.actor, justification=data["justification"], user=request.user)
        return messages.WARNING, (f"Gate {gate.id} overridden (break-glass): the run "
                                  "continues, and the override is marked for review.")

    return _gate_form_posted(request, principal, gate_id, GateOverrideForm(request.POST), act)


@require_POST
@console_view
def gate_override_review(request, principal, gate_id: int):
    """Mark an override reviewed from the queue or the run page; back there with a message."""

    def act(gate, data):
        gate = run_gate_override_review(
            tenant=principal.tenant, run_id=gate.run_id, gate_id=gate.id,
            actor=principal.actor, note=data["note"], user=request.user)
        return messages.SUCCESS, f"Override of gate {gate.id} marked reviewed."

    return _gate_form_posted(request, principal, gate_id, OverrideReviewForm(request.POST), act)


@require_http_methods(["GET", "HEAD", "POST"])
@console_view
def gate_review(request, principal, gate_id: int):
    """The gate behind an email link, with the decision form; only a POST decides."""
    token = request.POST.get("t", "") if request.method == "POST" else request.GET.get("t", "")
    try:
        gate = selectors.gate_get(principal.tenant, gate_id)
    except NotFound:
        return not_found(request, principal, "gate")
    try:
        claim = link_token_read(token, gate_id=gate.id, user_id=request.user.pk)
    except LinkRefused as exc:
        return render(request, "console/gate_review.html",
                      {"principal": principal, "gate": gate, "link_error": exc.detail,
                       "link_code": exc.code}, status=LINK_STATUS.get(exc.code, 400))
    if request.method == "POST":
        form = GateDecisionForm(request.POST, schema=gate.input_schema)
        if form.is_valid():
            decision = form.cleaned_data["decision"]
            try:
                gate = run_gate_vote(
                    tenant=principal.tenant, run_id=gate.run_id, gate_id=gate.id,
                    voter=voter_for(principal), decision=decision,
                    comment=form.cleaned_data["comment"], data=form.cleaned_data["input"],
                    link=claim)
            except FCError as exc:
                messages.error(request, error_text(exc))
            else:
                messages.success(request, vote_message(gate, decision))
                return redirect(reverse("console:run", kwargs={"run_id": gate.run_id}))
        else:
            messages.error(request, form.error_text())
        gate = selectors.gate_get(principal.tenant, gate_id)
    row = gate_row(gate, principal)
    return render(request, "console/gate_review.html", {
        "principal": principal, "gate": gate, "row": row, "token": token,
        "votes": list(gate.approvals.all()), "four_eyes_text": FOUR_EYES_TEXT,
        "is_open": gate.status == GateStatus.OPEN,
    })
