"""The run API (DESIGN §8). Views parse input, call one service or selector, and render.

Tenant scoping comes from `request.principal` (set by
`fcore.interfaces.api.auth.HasTenantScope`); every lookup goes through `runs.selectors`, so another
tenant's object is a 404.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.merkle_log import ProofRangeError
from audit.stored import events_marked, events_readable, with_data_text
from fcore.errors import BadRequest, ErrorCode
from fcore.tenancy import RUN_STATUS_SCOPE
from gates.services import Voter
from runs import selectors, services, waits
from runs.verification import run_receipts_verify

from . import examples as ex
from . import log_views
from . import serializers as s
from .evidence import evidence_pack
from .pagination import CheckedCursorPagination
from .schema import error_responses, path_parameters

ERRORS = s.ERROR_RESPONSES
READ_ERRORS = error_responses(400, 401, 403, 404, 429)
RUN = path_parameters("run_id")
GATE = path_parameters("run_id", "gate_id")


class RunCursor(CheckedCursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    ordering = ("-created_at", "-run_id")


class EventCursor(CheckedCursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"
    ordering = ("id",)


def _validated(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _validated_query(serializer_class, request):
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def render_run(run, *, include_logs: bool = False) -> dict:
    """The run's answer (`RunOut`; `audit_seq` when `selectors.run_read` read it). A run a
    service has just changed carries its steps as the run lock wrote them (`steps_left`):
    they are not read again."""
    run.steps_list, run.decisions_list, run.gates_list = selectors.run_parts(
        run, getattr(run, "steps_left", None))
    run.children_list = list(selectors.run_children(run).values_list("run_id", flat=True)) \
        if any(step.step_type == "workflow" for step in run.steps_list) else []
    if include_logs:
        run.logs_list = events_readable(selectors.run_events(run).select_related("stream"))
    return s.render(s.RunOut, run)


class RunListCreate(APIView):
    required_scopes = {"GET": "runs:read", "POST": "runs:write"}
    pagination_class = RunCursor

    @extend_schema(summary="List runs", tags=["runs"], parameters=[s.RunListQuery],
                   responses={200: s.RunSummaryOut(many=True), **READ_ERRORS},
                   examples=[ex.response("a page of runs", [ex.RUN_SUMMARY])])
    def get(self, request):
        """List the tenant's runs, newest first, with cursor pagination."""
        query = _validated_query(s.RunListQuery, request)
        qs = selectors.runs_for_tenant(
            request.principal.tenant, status=query.get("status"),
            workflow=query.get("workflow"), created_by=query.get("created_by"),
            parent=query.get("parent"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.render_many(s.RunSummaryOut, page))

    @extend_schema(
        summary="Create a run", tags=["runs"], request=s.RunCreateIn,
        responses={201: s.RunOut, 200: s.RunOut, **ERRORS},
        examples=[ex.request("PT-004 run", {"workflow": "pt004_execution_spine",
                                            "input": {"amount": 500},
                                            "idempotency_key": "pt004-happy-1",
                                            "metadata": {"campaign": "PT-004"}}),
                  ex.response("created", ex.RUN, 201),
                  ex.response("replayed key: the same run", ex.RUN, 200)])
    def post(self, request):
        """Create a run; a replayed idempotency key answers 200 with the same run."""
        data = _validated(s.RunCreateIn, request)
        run, created = services.run_create(
            tenant=request.principal.tenant, workflow=data["workflow"],
            version=data.get("version"), input=data["input"], metadata=data["metadata"],
            actor=request.principal.actor, actor_key=request.principal.kid,
            idempotency_key=data.get("idempotency_key"))
        if not created:  # the first run of a replayed key: read with its definition
            run = selectors.run_get(request.principal.tenant, run.run_id)
        return Response(render_run(run), status=http.HTTP_201_CREATED if created else 200)


class RunDetail(APIView):
    required_scopes = {"GET": "runs:read", "PATCH": RUN_STATUS_SCOPE}

    @extend_schema(
        summary="Get a run, or wait for it to move", tags=["runs"],
        parameters=[*RUN, s.RunDetailQuery],
        responses={200: s.RunOut, **READ_ERRORS},
        examples=[ex.response("a running run", ex.RUN)])
    def get(self, request, run_id):
        """The run with steps, decisions and gates; `?include_logs=true` adds its events.
        With `?wait_s=N&after_seq=S` a waiting read: answers as soon as the run's audit
        stream passes seq S, or after N seconds (at most 30) unchanged."""
        query = _validated_query(s.RunDetailQuery, request)
        tenant = request.principal.tenant
        run = selectors.run_read(tenant, run_id)  # another tenant's run: 404, no wait
        if "wait_s" in query and run.audit_seq <= query["after_seq"]:
            waits.run_wait(run, after_seq=query["after_seq"], wait_s=query["wait_s"])
            run = selectors.run_read(tenant, run_id)
        return Response(render_run(run, include_logs=query["include_logs"]))


class RunStatusUpdate(APIView):
    required_scopes = {"PATCH": RUN_STATUS_SCOPE}  # the console's cancel asks for the same

    @extend_schema(
        summary="Pause, resume, cancel or fail a run", tags=["runs"], parameters=RUN,
        request=s.RunStatusIn, responses={200: s.RunOut, **ERRORS},
        examples=[ex.request("pause", {"status": "paused", "reason": "gateway down"}),
                  ex.request("cancel", {"status": "cancelled", "reason": "duplicate"}),
                  ex.response("paused", {**ex.RUN, "status": "paused",
                                         "status_reason": "gateway down"})])
    def patch(self, request, run_id):
        """Operator pause, resume, cancel or fail (FSM-checked; 409 lists what is allowed)."""
        data = _validated(s.RunStatusIn, request)
        tenant = request.principal.tenant
        services.run_set_status(tenant=tenant, run_id=selectors.run_get(tenant, run_id).run_id,
                                status=data["status"], reason=data["reason"],
                                actor=request.principal.actor)
        return Response(render_run(selectors.run_get(tenant, run_id)))


class RunAliasDetail(RunDetail):
    """`/api/fc/runs/{id}`: GET as the run, PATCH as its status update (PT-004 harness)."""

    def patch(self, request, run_id):
        return RunStatusUpdate.patch(self, request, run_id)


class StepReport(APIView):
    required_scopes = {"PATCH": "runs:write"}

    @extend_schema(
        summary="Report an external step's result", tags=["steps"],
        parameters=path_parameters("run_id", "step_id"), request=s.StepReportIn,
        responses={200: s.RunOut, **ERRORS},
        examples=[ex.request("succeeded", {"status": "succeeded", "output": {"ok": True},
                                           "attempt": 1}),
                  ex.request("failed", {"status": "failed",
                                        "error": {"message": "gateway timeout"}}),
                  ex.response("the run after the report", ex.RUN_AFTER_REPORT)])
    def patch(self, request, run_id, step_id):
        """An external executor reports its step succeeded or failed."""
        data = _validated(s.StepReportIn, request)
        tenant = request.principal.tenant
        # the service's run lock is tenant-scoped: another tenant's run is a 404 there
        run = services.step_report(tenant=tenant, run_id=run_id, step_id=step_id,
                                   actor=request.principal.actor, status=data["status"],
                                   output=data["output"], error=data["error"],
                                   attempt=data.get("attempt"),
                                   lease_token=data.get("lease_token"))
        return Response(render_run(run))


class RunGates(APIView):
    required_scopes = {"GET": "runs:read", "POST": "gates:request"}

    @extend_schema(summary="List a run's gates", tags=["gates"], parameters=RUN,
                   responses={200: s.GateOut(many=True), **READ_ERRORS},
                   examples=[ex.response("one open gate", [ex.GATE])])
    def get(self, request, run_id):
        """The run's gates, oldest first."""
        run = selectors.run_get(request.principal.tenant, run_id)
        return Response(s.render_many(s.GateOut, selectors.run_gates(run)))

    @extend_schema(
        summary="Request an approval gate", tags=["gates"], parameters=RUN,
        request=s.GateRequestIn, responses={201: s.GateOut, **ERRORS},
        examples=[ex.request("two approvers within a day", {
                      "step_id": "step_3", "reason": "vendor is new",
                      "required_approvals": 2, "approver_group": "approvers",
                      "expires_in": 86400, "on_timeout": "reject"}),
                  ex.response("opened", {**ex.GATE, "source": "api", "step_id": "step_3",
                                         "required_approvals": 2,
                                         "reason": "vendor is new"}, 201)])
    def post(self, request, run_id):
        """Request an approval gate; the run pauses until it resolves."""
        data = _validated(s.GateRequestIn, request)
        tenant = request.principal.tenant
        run = selectors.run_get(tenant, run_id)
        settings = {k: data[k] for k in s.GateRequestIn.GATE_FIELDS if k in data}
        gate = services.run_request_gate(
            tenant=tenant, run_id=run.run_id, actor=request.principal.actor,
            actor_key=request.principal.kid, reason=data["reason"],
            step_id=data.get("step_id"), settings=settings)
        return Response(s.render(s.GateOut, selectors.gate_get(tenant, gate.id)), status=201)


class GateDetail(APIView):
    required_scopes = {"GET": "runs:read", "PATCH": "gates:resolve"}

    @extend_schema(summary="Get a gate", tags=["gates"], parameters=GATE,
                   responses={200: s.GateOut, **READ_ERRORS},
                   examples=[ex.response("open", ex.GATE)])
    def get(self, request, run_id, gate_id):
        """One gate with its votes."""
        run = selectors.run_get(request.principal.tenant, run_id)
        gate = selectors.gate_get(request.principal.tenant, gate_id)
        if gate.run_id != run.run_id:
            return Response({"code": ErrorCode.NOT_FOUND, "detail": "No such gate."}, status=404)
        return Response(s.render(s.GateOut, gate))

    @extend_schema(
        summary="Vote on a gate", tags=["gates"], parameters=GATE, request=s.GateVoteIn,
        responses={200: s.GateOut, **ERRORS},
        examples=[ex.request("approve", {"decision": "approve",
                                         "comment": "checked the invoice"}),
                  ex.request("reject", {"decision": "reject", "comment": "wrong vendor"}),
                  ex.response("approved", ex.GATE_APPROVED)])
    def patch(self, request, run_id, gate_id):
        """Vote approve or reject; the gate resolves on quorum or on the first reject."""
        data = _validated(s.GateVoteIn, request)
        principal = request.principal
        voter = Voter(actor=principal.actor, groups=principal.groups, key=principal.kid)
        gate = services.run_gate_vote(  # its run lock is tenant-scoped (404 for another's)
            tenant=principal.tenant, run_id=run_id, gate_id=gate_id, voter=voter,
            decision=data["decision"], comment=data["comment"], data=data["input"])
        return Response(s.render(s.GateOut, selectors.gate_with_votes(gate)))


class RunReceipt(APIView):
    required_scopes = {"GET": "runs:read"}

    @extend_schema(summary="Verify a run's receipts", tags=["evidence"], parameters=RUN,
                   responses={200: s.ReceiptReportOut, **READ_ERRORS},
                   examples=[ex.response("verified", {
                       "verified": True, "workflow_hash": ex.H, "receipts": [ex.RECEIPT],
                       "failures": []})])
    def get(self, request, run_id):
        """Receipts and workflow_hash, recomputed from the stored rows."""
        run = selectors.run_get(request.principal.tenant, run_id)
        return Response(run_receipts_verify(run))


class RunEvidence(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(summary="Get a run's evidence pack", tags=["evidence"],
                   parameters=[*RUN, OpenApiParameter(
                       "since", int, description="The tree size of a log checkpoint you "
                       "kept: the pack's `log.consistency` then proves the log still "
                       "extends it.")],
                   responses={200: s.EvidencePackOut, **READ_ERRORS},
                   examples=[ex.response("a completed run's pack (shortened)", ex.EVIDENCE)])
    def get(self, request, run_id):
        """The run's evidence pack (JSON)."""
        run = selectors.run_get(request.principal.tenant, run_id)
        since = log_views.since_param(request)
        try:
            pack = evidence_pack(run, since=since)
        except ProofRangeError as exc:
            raise BadRequest(str(exc)) from None
        response = Response(pack)
        response["Content-Disposition"] = f'inline; filename="evidence-{run.run_id}.json"'
        return response


class AuditList(APIView):
    required_scopes = {"GET": "audit:read"}
    pagination_class = EventCursor

    @extend_schema(summary="List audit events", tags=["audit"], parameters=[s.AuditListQuery],
                   responses={200: s.EventOut(many=True), **READ_ERRORS},
                   examples=[ex.response("a page of events", [ex.EVENT])])
    def get(self, request):
        """The tenant's audit events, oldest first, with cursor pagination."""
        q = _validated_query(s.AuditListQuery, request)
        qs = selectors.events_for_tenant(
            request.principal.tenant, stream=q.get("stream"), code=q.get("code"),
            actor=q.get("actor"), run_id=q.get("run_id"))
        paginator = self.pagination_class()
        page = events_marked(paginator.paginate_queryset(with_data_text(qs), request, view=self))
        return paginator.get_paginated_response(s.render_many(s.EventOut, page))
