"""Gates as one person sees them, and the queue's filtered, sorted, paginated query.

The queue is built in the database: tenant scoping comes from
`runs.selectors.gates_open_for_tenant`, the person's groups and the filters narrow it there,
and one page is read with its votes and policy decisions prefetched — a constant number of
queries whatever the page size or the number of open gates.
"""

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from django.core.paginator import Paginator
from django.db.models import Exists, F, OuterRef, Prefetch, Q
from django.urls import reverse
from django.utils import timezone

from fcore.tenancy import Principal
from gates.models import OVERRIDE_PERMISSION, Gate, GateStatus, PolicyDecision, Vote
from runs import selectors

from .access import review_allowed, voter_for
from .inputs import schema_fields

LARGE_INPUT_CHARS = 400
AGES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1),
        "7d": timedelta(days=7)}
SORTS = {
    "deadline": (F("expires_at").asc(nulls_last=True), "created_at", "id"),
    "age": ("created_at", "id"),
    "newest": ("-created_at", "-id"),
}


@dataclass(frozen=True)
class GateRow:
    """A gate as one person sees it: progress, their own vote, and whether four-eyes
    keeps them from deciding; with the policy decision that opened it, when there is one."""

    gate: Gate
    approvals: int
    my_vote: str | None
    four_eyes: bool
    may_vote: bool
    decision: PolicyDecision | None = None

    @property
    def can_decide(self) -> bool:
        return (self.gate.status == GateStatus.OPEN and self.may_vote and not self.four_eyes
                and self.my_vote is None)

    @cached_property
    def gid(self) -> str:
        """The gate id as text: templates print it a dozen times per row, and a string
        skips number localisation."""
        return str(self.gate.id)

    @cached_property
    def decide_url(self) -> str:
        return reverse("console:gate-decide", kwargs={"gate_id": self.gate.id})

    @property
    def input_fields(self):
        """The gate's input schema as form fields (None: answer with JSON)."""
        return schema_fields(self.gate.input_schema)

    @cached_property
    def votes(self) -> list:
        return list(self.gate.approvals.all())

    @property
    def step_input(self):
        """The input the policy saw for the step (the run's input for a run-level gate)."""
        if self.decision is not None and isinstance(self.decision.context, dict):
            return self.decision.context.get("input")
        step = self.gate.step_run
        if step is not None and step.input is not None:
            return step.input
        return self.gate.run.input

    @cached_property
    def step_input_text(self) -> str:
        return json.dumps(self.step_input, indent=2, sort_keys=True, ensure_ascii=False,
                          default=str)

    @property
    def step_input_large(self) -> bool:
        text = self.step_input_text
        return len(text) > LARGE_INPUT_CHARS or text.count("\n") > 12


def _latest_decision(gate: Gate) -> PolicyDecision | None:
    step = gate.step_run
    if step is None:
        return None
    decisions = getattr(step, "console_decisions", None)
    if decisions is None:
        return None
    return decisions[-1] if decisions else None


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
        may_vote=voter_for(principal).may_vote(gate),
        decision=_latest_decision(gate),
    )


def with_decisions(gates):
    """Prefetch each gate step's policy decisions (oldest first) as `console_decisions`."""
    return gates.prefetch_related(Prefetch(
        "step_run__decisions", to_attr="console_decisions",
        queryset=PolicyDecision.objects.order_by("evaluated_at", "id")))


def gates_with_decisions(gates, decisions: list[PolicyDecision]) -> list[Gate]:
    """The gates with each gate step's decisions as `console_decisions`, taken from the
    run's decisions the caller has read already (`runs.selectors.run_decisions`, oldest
    first)."""
    by_step: dict[int, list[PolicyDecision]] = {}
    for decision in decisions:
        by_step.setdefault(decision.step_run_id, []).append(decision)
    gates = list(gates)
    for gate in gates:
        if gate.step_run is not None:
            gate.step_run.console_decisions = by_step.get(gate.step_run_id, [])
    return gates


def decidable(gates, principal: Principal):
    """Narrow gates to those the person's groups may decide (escalation included)."""
    groups = principal.groups
    if groups is None:
        return gates
    return gates.filter(Q(approver_group__in=groups)
                        | Q(escalate_to__in=groups, resolution__escalated=True))


def filtered(gates, params: dict):
    """Apply the queue filters (`QueueFilterForm.cleaned_data`) and the sort."""
    if params.get("workflow"):
        gates = gates.filter(run__definition__name=params["workflow"])
    if params.get("group"):
        gates = gates.filter(approver_group=params["group"])
    if params.get("tier") is not None:
        gates = gates.filter(Exists(PolicyDecision.objects.filter(
            step_run_id=OuterRef("step_run_id"), tier=params["tier"])))
    if params.get("age") in AGES:
        gates = gates.filter(created_at__lte=timezone.now() - AGES[params["age"]])
    return gates.order_by(*SORTS.get(params.get("sort") or "deadline", SORTS["deadline"]))


@dataclass
class QueuePage:
    rows: list
    page: object
    total: int
    matching: int


def queue_page(principal: Principal, params: dict) -> QueuePage:
    """One page of the person's open gates, filtered and sorted."""
    open_gates = selectors.gates_open_for_tenant(principal.tenant)
    mine = decidable(open_gates, principal)
    total = mine.count()
    # Sort and slice narrow rows (ids only), then read the page's gates in full: sorting
    # thousands of wide joined rows is what would make a long queue slow.
    ids = filtered(mine, params).values_list("id", flat=True)
    paginator = Paginator(ids, params.get("per") or 25)
    if not any(params.get(k) for k in ("workflow", "group", "age")) and params.get(
            "tier") is None:
        paginator.count = total  # the same query: do not run it twice
    page = paginator.get_page(params.get("page"))
    page_ids = list(page.object_list)
    gates = {g.id: g for g in with_decisions(open_gates).filter(pk__in=page_ids)}
    rows = [gate_row(gates[i], principal) for i in page_ids if i in gates]
    return QueuePage(rows=rows, page=page, total=total, matching=paginator.count)


def review_rows(principal: Principal, user, limit: int = 20) -> list[GateRow]:
    """Overridden gates still marked for review that this person's groups could have
    decided (everyone with the override or the review permission sees them all)."""
    gates = selectors.gates_needing_review(principal.tenant)
    if not (user.has_perm(OVERRIDE_PERMISSION) or review_allowed(user)):
        gates = decidable(gates, principal)
    return [gate_row(g, principal) for g in gates[:limit]]
