"""Gate services: opening a gate, recording votes, expiry, escalation, break-glass and its
review.

These run inside a transaction in which the caller (a service in `runs`) already holds the
run's row lock, and check it (`fcore.held.assert_run_held`); they lock the gate row next
(lock order run → gate → audit stream head).
They never move the run: what a resolved gate means for the run is decided in `runs`.
Every opening, escalation and resolution also writes its notification outbox rows
(`gates.notify.gate_notify`) in the same transaction.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from django_fsm import can_proceed

from audit.codes import Code
from audit.services import audit_append
from fcore.errors import BadRequest, Conflict, ErrorCode, Forbidden, FourEyes, InvalidTransition
from fcore.held import assert_run_held
from fcore.jsonlimits import json_problem
from fcore.metrics import GATE_WAIT, observe_on_commit
from fcore.models import FOUR_EYES_ACTOR_AND_KEY

from .input_schema import InputSchemaError, input_schema_errors
from .models import Approval, Gate, GateStatus, Vote
from .notify import EVENT_ESCALATED, EVENT_OPENED, EVENT_RESOLVED, gate_notify


@dataclass(frozen=True)
class Voter:
    """Who votes: the actor string and, for a person, their groups in the tenant.

    `groups is None` means a machine client holding the `gates:resolve` scope; `key` is
    its API key id ("" for a person).
    """

    actor: str
    groups: frozenset | None = None
    key: str = ""

    def may_vote(self, gate: Gate) -> bool:
        if self.groups is None:
            return True
        allowed = {gate.approver_group}
        if (gate.resolution or {}).get("escalated") and gate.escalate_to:
            allowed.add(gate.escalate_to)
        return bool(allowed & self.groups)


def gate_open(*, run, step_run, source: str, reason: str, requested_by: str,
              settings: dict, requested_by_key: str = "") -> Gate:
    """Open a gate on `run` (locked by the caller) and record `FC-GATE-001`."""
    assert_run_held(run)
    expires_in = settings["expires_in"]
    gate = Gate.objects.create(
        tenant_id=run.tenant_id, run=run, step_run=step_run, source=source,
        reason=reason[:1000], requested_by=requested_by, requested_by_key=requested_by_key,
        required_approvals=settings["required_approvals"],
        approver_group=settings["approver_group"],
        expires_at=timezone.now() + timedelta(seconds=expires_in) if expires_in else None,
        expires_in=expires_in,
        on_timeout=settings["on_timeout"], escalate_to=settings["escalate_to"],
        input_schema=settings["input_schema"],
    )
    event = audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_OPENED, actor=requested_by,
        data={"gate_id": gate.id, "step_id": step_run.step_id if step_run else None,
              "source": source, "reason": gate.reason,
              "required_approvals": gate.required_approvals,
              "approver_group": gate.approver_group,
              "expires_at": gate.expires_at.isoformat() if gate.expires_at else None,
              "requested_by_key": requested_by_key or None},
    )
    gate_notify(gate=gate, run=run, event=EVENT_OPENED, audit_event=event)
    return gate


def _invalid(gate: Gate, target: str = "") -> InvalidTransition:
    allowed = [t.target for t in gate.get_available_status_transitions()]
    return InvalidTransition(obj=f"Gate {gate.id}", current=gate.status, allowed=allowed,
                             target=target)


def gate_check_voter(*, gate: Gate, run, voter: Voter) -> None:
    """Four-eyes and group membership; raises Forbidden/FourEyes.

    Actors compare exactly (subs are validated when a token is read). With the tenant
    setting `four_eyes: actor_and_key` the API key that created the run or requested the
    gate cannot vote either, whatever actor it names."""
    if voter.actor in {gate.requested_by, run.created_by}:
        raise FourEyes("The actor who created the run or requested the gate cannot vote on it.")
    if (voter.key and voter.key in {gate.requested_by_key, run.created_by_key}
            and run.tenant.four_eyes == FOUR_EYES_ACTOR_AND_KEY):
        raise FourEyes("The API key that created the run or requested the gate cannot vote "
                       "on it (four_eyes: actor_and_key), whatever its sub.")
    if not voter.may_vote(gate):
        raise Forbidden(f"Only members of '{gate.approver_group}' may vote on this gate.",
                        code=ErrorCode.NOT_AN_APPROVER)


def gate_vote(*, gate: Gate, run, voter: Voter, decision: str, comment: str = "",
              data=None) -> Gate:
    """Record one vote on a locked open gate; resolve it on quorum or on the first reject."""
    assert_run_held(run)
    if decision not in Vote.values:
        raise BadRequest("decision must be approve or reject", code=ErrorCode.INVALID,
                         errors={"decision": ["approve or reject"]})
    if gate.status != GateStatus.OPEN:
        target = GateStatus.APPROVED if decision == Vote.APPROVE else GateStatus.REJECTED
        raise _invalid(gate, target)
    gate_check_voter(gate=gate, run=run, voter=voter)
    problem = json_problem(data)
    if problem:
        raise BadRequest("The input cannot be stored.", code=ErrorCode.INVALID_INPUT,
                         errors={"input": [problem]})
    if decision == Vote.APPROVE and gate.input_schema is not None:
        try:
            errors = input_schema_errors(gate.input_schema, data)
        except InputSchemaError as exc:  # stored before schemas were checked on save
            raise BadRequest(
                f"This gate's input schema cannot be used: {exc}. The gate can still be "
                "rejected, or overridden by someone allowed to.",
                code=ErrorCode.INPUT_SCHEMA_UNUSABLE, errors={"input_schema": [str(exc)]}) from None
        if errors:
            raise BadRequest("The input does not match the gate's input schema.",
                             code=ErrorCode.INVALID_INPUT, errors=errors)
    votes = list(gate.approvals.all())  # oldest first; no other vote lands meanwhile
    if any(vote.actor == voter.actor for vote in votes):  # (the caller holds the run lock)
        raise Conflict("This actor has already voted on this gate.",
                       code=ErrorCode.ALREADY_VOTED)
    votes.append(Approval.objects.create(gate=gate, actor=voter.actor, decision=decision,
                                         comment=comment, input=data))
    approvals = sum(vote.decision == Vote.APPROVE for vote in votes)
    audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_VOTE, actor=voter.actor,
        data={"gate_id": gate.id, "vote": decision, "comment": comment,
              "approvals": approvals, "required_approvals": gate.required_approvals,
              "input": data, "key": voter.key or None},
    )
    if decision == Vote.REJECT:
        _resolve(gate, run, gate.reject, actor=voter.actor, reason=comment or "rejected",
                 approvals=votes)
    elif approvals >= gate.required_approvals:
        _resolve(gate, run, gate.approve, actor=voter.actor, reason="quorum reached",
                 approvals=votes)
    return gate


def _resolve(gate: Gate, run, transition_method, *, actor: str, reason: str,
             approvals: list[Approval]) -> None:
    """Resolve a locked gate whose votes, oldest first, are `approvals`."""
    if not can_proceed(transition_method):
        raise _invalid(gate)
    transition_method()
    votes = _vote_records(approvals)
    gate.resolution = {**(gate.resolution or {}), "by": actor, "reason": reason, "votes": votes,
                       "input": _merged_input(approvals)}
    gate.resolved_at = timezone.now()
    observe_on_commit(GATE_WAIT, gate.created_at, gate.resolved_at)
    gate.save()
    event = audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_RESOLVED, actor=actor,
        data={"gate_id": gate.id, "status": gate.status, "reason": reason, "votes": votes},
    )
    gate_notify(gate=gate, run=run, event=EVENT_RESOLVED, audit_event=event)


def _vote_records(votes: list[Approval]) -> list[dict]:
    """The votes as a resolution and its audit event record them."""
    return [{"actor": v.actor, "decision": v.decision, "comment": v.comment} for v in votes]


def _merged_input(votes: list[Approval]):
    """The `input` objects of the approving votes merged, oldest first (later wins)."""
    merged = None
    for vote in votes:
        if vote.decision == Vote.APPROVE and isinstance(vote.input, dict):
            merged = {**(merged or {}), **vote.input}
    return merged


def gate_expire(*, gate: Gate, run, actor: str) -> None:
    """Expire a locked open gate past its deadline: `FC-GATE-004`."""
    assert_run_held(run)
    if not can_proceed(gate.expire):
        raise _invalid(gate, GateStatus.EXPIRED)
    gate.expire()
    gate.resolved_at = timezone.now()
    observe_on_commit(GATE_WAIT, gate.created_at, gate.resolved_at)
    gate.resolution = {**(gate.resolution or {}), "by": actor, "reason": "expired"}
    gate.save()
    event = audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_EXPIRED, actor=actor,
        data={"gate_id": gate.id, "status": gate.status,
              "expires_at": gate.expires_at.isoformat() if gate.expires_at else None},
    )
    gate_notify(gate=gate, run=run, event=EVENT_RESOLVED, audit_event=event)


def gate_cancel(*, gate: Gate, run, actor: str, reason: str) -> None:
    """Cancel a locked open gate because its run ended: `FC-GATE-003` with status cancelled."""
    assert_run_held(run)
    gate.cancel()
    gate.resolved_at = timezone.now()
    observe_on_commit(GATE_WAIT, gate.created_at, gate.resolved_at)
    gate.resolution = {**(gate.resolution or {}), "by": actor, "reason": reason}
    gate.save()
    event = audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_RESOLVED, actor=actor,
        data={"gate_id": gate.id, "status": gate.status, "reason": reason, "votes": []},
    )
    gate_notify(gate=gate, run=run, event=EVENT_RESOLVED, audit_event=event)


def gate_escalate(*, gate: Gate, run, actor: str, now=None) -> bool:
    """On timeout with `on_timeout: escalate`: once, add the escalation group and extend
    the deadline by the original window. Returns False when already escalated."""
    assert_run_held(run)
    resolution = gate.resolution or {}
    if resolution.get("escalated") or not gate.escalate_to or not gate.expires_in:
        return False
    gate.expires_at = (now or timezone.now()) + timedelta(seconds=gate.expires_in)
    gate.resolution = {**resolution, "escalated": True}
    gate.save(update_fields=["expires_at", "resolution"])
    event = audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_EXPIRED, actor=actor,
        data={"gate_id": gate.id, "status": gate.status, "action": "escalated",
              "escalate_to": gate.escalate_to, "expires_at": gate.expires_at.isoformat()},
    )
    gate_notify(gate=gate, run=run, event=EVENT_ESCALATED, audit_event=event)
    return True


def gate_override(*, gate: Gate, run, actor: str, justification: str) -> Gate:
    """Break-glass: force a locked open gate to `overridden` (`FC-GATE-005`), whatever its
    votes. The caller has checked the permission and the tenant switch; four-eyes does not
    apply, so the gate is marked for review instead."""
    assert_run_held(run)
    justification = (justification or "").strip()
    if not justification:
        raise BadRequest("A justification is required to override a gate.", code=ErrorCode.INVALID,
                         errors={"justification": ["required"]})
    if not can_proceed(gate.override):
        raise _invalid(gate, GateStatus.OVERRIDDEN)
    gate.override()
    approvals = list(gate.approvals.all())
    votes = _vote_records(approvals)
    gate.resolution = {**(gate.resolution or {}), "by": actor, "reason": "break-glass override",
                       "justification": justification, "votes": votes,
                       "input": _merged_input(approvals)}
    gate.resolved_at = timezone.now()
    observe_on_commit(GATE_WAIT, gate.created_at, gate.resolved_at)
    gate.needs_review = True
    gate.save()
    event = audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_OVERRIDDEN, actor=actor,
        data={"gate_id": gate.id, "status": gate.status, "justification": justification,
              "votes": votes, "approvals": sum(v["decision"] == Vote.APPROVE for v in votes),
              "required_approvals": gate.required_approvals, "needs_review": True},
    )
    gate_notify(gate=gate, run=run, event=EVENT_RESOLVED, audit_event=event)
    return gate


REVIEW_NOTE_MAX = 4000


def gate_override_review(*, gate: Gate, run, actor: str, note: str) -> Gate:
    """Someone other than the person who forced it through marks a locked overridden gate
    reviewed, with a note (`FC-GATE-006`); the console stops listing it. Its status and
    resolution stay as the override left them."""
    assert_run_held(run)
    note = (note or "").strip()
    if not note:
        raise BadRequest("A note is required to mark an override reviewed.", code=ErrorCode.INVALID,
                         errors={"note": ["required"]})
    if len(note) > REVIEW_NOTE_MAX:
        raise BadRequest(f"The note is longer than {REVIEW_NOTE_MAX} characters.",
                         code=ErrorCode.INVALID, errors={"note": [f"at most {REVIEW_NOTE_MAX}"]})
    if gate.status != GateStatus.OVERRIDDEN:
        raise Conflict(f"Gate {gate.id} was not overridden: it is {gate.status}.",
                       code=ErrorCode.NOT_OVERRIDDEN, current=gate.status)
    if not gate.needs_review:
        raise Conflict(f"Gate {gate.id} was already reviewed by {gate.reviewed_by}.",
                       code=ErrorCode.ALREADY_REVIEWED, current=gate.status,
                       reviewed_by=gate.reviewed_by)
    overridden_by = (gate.resolution or {}).get("by", "")
    if actor == overridden_by:
        raise FourEyes("The person who overrode a gate cannot review the override.")
    gate.needs_review = False
    gate.reviewed_by, gate.reviewed_at, gate.review_note = actor, timezone.now(), note
    gate.save(update_fields=["needs_review", "reviewed_by", "reviewed_at", "review_note"])
    audit_append(
        tenant_id=run.tenant_id, stream=run.stream_name, code=Code.GATE_OVERRIDE_REVIEWED,
        actor=actor,
        data={"gate_id": gate.id, "status": gate.status, "overridden_by": overridden_by,
              "note": note},
    )
    return gate
