"""Read-side selectors. Tenant filtering happens here, once, for every query the API and
the console make; an object of another tenant is simply not found."""

from django.db.models import prefetch_related_objects

from audit.models import AuditEvent, AuditStream
from audit.services import run_stream_name
from fcore.errors import NotFound
from gates.models import Gate, GateStatus, PolicyDecision

from .engine import definition_of, parse_gate_id, parse_run_id, parts_of_run, run_with_seq
from .models import Run, Schedule, StepRun


def runs_for_tenant(tenant, *, status=None, workflow=None, created_by=None, parent=None):
    qs = Run.objects.for_tenant(tenant).select_related("definition")
    if parent:  # a run id: the children of another tenant's run are not found
        qs = qs.filter(parent_run_id=parent)
    if status:
        qs = qs.filter(status=status)
    if workflow:
        qs = qs.filter(definition__name=workflow)
    if created_by:
        qs = qs.filter(created_by=created_by)
    return qs


def run_get(tenant, run_id) -> Run:
    try:
        return Run.objects.for_tenant(tenant).select_related("definition", "tenant").get(
            pk=parse_run_id(run_id))
    except Run.DoesNotExist:
        raise NotFound("No such run.") from None


def run_read(tenant, run_id) -> Run:
    """The run with `audit_seq`, its stream's head seq, read in the same statement: the
    seq of exactly the state read (`RunOut.audit_seq`). Its definition comes from the
    process's cache (definitions never change) and its tenant is `tenant`."""
    run_uuid = parse_run_id(run_id)
    run = run_with_seq(run_uuid, run_stream_name(run_uuid), tenant.id)
    if run is None:
        raise NotFound("No such run.")
    run.tenant, run.definition = tenant, definition_of(run.definition_id)
    run.audit_seq = run.audit_seq or 0
    return run


def run_locked_for_reading(run):
    """The run's row read afresh and locked until the transaction ends. Every change to a
    run takes this lock first, so what is read while it is held — rows and events — is
    one state of the run (the evidence pack binds them to each other)."""
    return (Run.objects.for_tenant(run.tenant).select_for_update(of=("self",))
            .select_related("definition", "tenant").get(pk=run.pk))


def run_children(run):
    """The child runs a run's workflow steps started, oldest first (same tenant)."""
    return Run.objects.filter(tenant_id=run.tenant_id, parent_run=run).order_by(
        "created_at", "run_id")


def run_steps(run):
    return StepRun.objects.filter(run=run).order_by("index", "id")  # instances share an index


def run_decisions(run):
    return (PolicyDecision.objects.filter(step_run__run=run)
            .select_related("step_run").order_by("evaluated_at", "id"))


def run_gates(run):
    return (Gate.objects.filter(run=run).select_related("step_run")
            .prefetch_related("approvals").order_by("created_at", "id"))


def run_parts(run, steps: list[StepRun] | None = None) -> tuple[list, list, list]:
    """(steps, decisions, gates) of a run for its answer, oldest first, in one round trip
    (`engine.parts_of_run`) and one more for the gates' votes when it has gates; each
    decision and gate gets its step from the steps, and each gate the run. `steps`: as
    the run's lock left them (a service's answer), else read with the rest."""
    read_steps, decisions, gates = parts_of_run(run.run_id, with_steps=steps is None)
    steps = read_steps if steps is None else steps
    by_pk = {step.pk: step for step in steps}
    for row in (*decisions, *gates):
        if row.step_run_id is not None:
            row.step_run = by_pk[row.step_run_id]
    for gate in gates:
        gate.run = run
    prefetch_related_objects(gates, "approvals")
    return steps, decisions, gates


def run_events(run):
    return AuditEvent.objects.filter(stream__name=run.stream_name).order_by("seq")


def gates_open_for_tenant(tenant):
    return (Gate.objects.filter(tenant=tenant, status=GateStatus.OPEN)
            .select_related("run__definition", "step_run").prefetch_related("approvals")
            .order_by("expires_at", "created_at"))


def gates_needing_review(tenant):
    """Gates forced through by break-glass that nobody has reviewed yet, newest first."""
    return (Gate.objects.filter(tenant=tenant, needs_review=True)
            .select_related("run__definition", "step_run").prefetch_related("approvals")
            .order_by("-resolved_at", "-id"))


def gate_with_votes(gate: Gate) -> Gate:
    """A gate a service has just changed (with its run and step), its votes read in one
    query, as `gate_get` would give it."""
    prefetch_related_objects([gate], "approvals")
    return gate


def gate_get(tenant, gate_id) -> Gate:
    try:
        return (Gate.objects.filter(tenant=tenant).select_related("run__definition", "step_run")
                .get(pk=parse_gate_id(gate_id)))
    except Gate.DoesNotExist:
        raise NotFound("No such gate.") from None


def events_for_tenant(tenant, *, stream=None, code=None, actor=None, run_id=None):
    qs = AuditEvent.objects.filter(tenant=tenant).select_related("stream")
    if run_id:
        stream = f"run/{run_id}"
    if stream:
        qs = qs.filter(stream__name=stream)
    if code:
        qs = qs.filter(code=code)
    if actor:
        qs = qs.filter(actor=actor)
    return qs


def streams_for_tenant(tenant):
    return AuditStream.objects.filter(tenant=tenant)


def schedules_for_tenant(tenant):
    """The tenant's schedules by name, with the run each last started."""
    return (Schedule.objects.for_tenant(tenant).select_related("last_run")
            .order_by("name", "id"))
