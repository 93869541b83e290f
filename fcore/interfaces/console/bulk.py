"""Bulk decisions: one approve or reject, with one comment, for several queue items.

Each gate is its own vote through `runs.services.run_gate_vote`, one call per gate, each in
its own transaction (the service takes the run lock): a refusal on one gate (four-eyes, a
gate closed meanwhile, another tenant's id) never undoes the others. The person gets one
summary per outcome, e.g. "3 approved, 1 refused: four_eyes (gate 12)".
"""

from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib import messages
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from fcore.errors import FCError, NotFound
from fcore.tenancy import Principal
from gates.models import GateStatus, Vote
from runs import selectors
from runs.services import run_gate_vote

from .access import back_to_queue, console_view, voter_for, wants_partial
from .forms import BulkDecisionForm
from .queue import current_query, render_queue

DONE = {Vote.APPROVE: "approved", Vote.REJECT: "rejected"}


@dataclass
class BulkResult:
    decision: str
    done: list = field(default_factory=list)
    resolved: list = field(default_factory=list)
    refused: dict = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> str:
        """'3 approved, 1 refused: four_eyes (gate 12)'."""
        parts = [f"{len(self.done)} {DONE[self.decision]}"] if self.done else []
        for code, ids in sorted(self.refused.items()):
            listed = ", ".join(str(i) for i in ids)
            parts.append(f"{len(ids)} refused: {code} (gate{'s' if len(ids) > 1 else ''} "
                         f"{listed})")
        return ", ".join(parts) or "Nothing was decided"


def gates_decide(*, principal: Principal, gate_ids: list[int], decision: str,
                 comment: str) -> BulkResult:
    """Vote on each gate in turn, each vote its own transaction; collect the outcomes."""
    result = BulkResult(decision=decision)
    voter = voter_for(principal)
    for gate_id in gate_ids:
        try:
            gate = selectors.gate_get(principal.tenant, gate_id)
            gate = run_gate_vote(tenant=principal.tenant, run_id=gate.run_id, gate_id=gate.id,
                                 voter=voter, decision=decision, comment=comment)
        except NotFound:
            result.refused["not_found"].append(gate_id)
        except FCError as exc:
            result.refused[exc.code].append(gate_id)
        else:
            result.done.append(gate_id)
            if gate.status != GateStatus.OPEN:
                result.resolved.append(gate_id)
    return result


@require_POST
@vary_on_headers("HX-Request")
@console_view
def gates_bulk_decide(request, principal):
    """Approve or reject the selected gates; back to the queue with the summary."""
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.error_text())
    else:
        result = gates_decide(principal=principal, gate_ids=form.cleaned_data["gates"],
                              decision=form.cleaned_data["decision"],
                              comment=form.cleaned_data["comment"])
        level = messages.success if not result.refused else (
            messages.warning if result.done else messages.error)
        text = result.summary()
        if result.resolved:
            text += f"; {len(result.resolved)} resolved"
        level(request, text + ".")
    if wants_partial(request):
        return render_queue(request, principal, current_query(request), partial=True)
    return back_to_queue(request)
