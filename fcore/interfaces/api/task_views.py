"""Executors (DESIGN §12): `POST /workflows/tasks/claim` and a claimed step's heartbeat.

The views validate and call one service of `runs.claims`; the report of a claimed step is
the ordinary `PATCH …/steps/{step_id}` with its `lease_token`.
"""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from runs import claims, selectors
from runs.definitions import is_external

from .schema import path_parameters
from .serializers import ERROR_RESPONSES, StrictCharField

TAG = "tasks"
TASK_SCOPE = "tasks:claim"


class ExternalTypeField(StrictCharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not is_external(value):
            raise serializers.ValidationError(
                "an external step type: `external` or `external:<name>`")
        return value


class ClaimIn(serializers.Serializer):
    step_types = serializers.ListField(
        child=ExternalTypeField(max_length=200), required=False, max_length=50,
        help_text="Only steps of these types (`external`, `external:<name>`); default: "
                  "every external step. A type no workflow uses matches nothing.")
    workflows = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, max_length=50,
        help_text="Only steps of runs of these workflows (names); default: all.")
    max = serializers.IntegerField(min_value=1, max_value=claims.MAX_TASKS, default=1,
                                   help_text="How many steps to claim at most (1–50).")
    wait_s = serializers.FloatField(
        min_value=0, max_value=claims.MAX_WAIT_S, default=0,
        help_text="Wait up to this many seconds (0–30) for work when there is none; the "
                  "answer comes as soon as a step is claimed.")
    lease_s = serializers.IntegerField(
        min_value=claims.LEASE_S_RANGE[0], max_value=claims.LEASE_S_RANGE[1], default=60,
        help_text="Lease length in seconds (5–600); heartbeat to keep it.")


class TaskOut(serializers.Serializer):
    run_id = serializers.UUIDField(help_text="The run of the step.")
    step_id = serializers.CharField(help_text="The step to execute.")
    attempt = serializers.IntegerField(help_text="Its attempt; with run and step the "
                                                 "idempotency key `run:step:attempt`.")
    workflow = serializers.CharField(help_text="The run's workflow name.")
    step_type = serializers.CharField(help_text="`external` or `external:<name>`.")
    input = serializers.JSONField(help_text="The step's resolved input.")
    lease_token = serializers.CharField(help_text="Shown once: send it with heartbeats "
                                                  "and with the report.")
    lease_expires_at = serializers.DateTimeField(help_text="When the lease ends unless "
                                                           "extended.")


class ClaimOut(serializers.Serializer):
    tasks = TaskOut(many=True, help_text="The claimed steps; empty after `wait_s`.")


class HeartbeatIn(serializers.Serializer):
    lease_token = StrictCharField(max_length=200, help_text="The claim's lease token.")
    lease_s = serializers.IntegerField(
        min_value=claims.LEASE_S_RANGE[0], max_value=claims.LEASE_S_RANGE[1], required=False,
        help_text="Extend to this many seconds from now (5–600); default: the claim's.")


class HeartbeatOut(serializers.Serializer):
    run_id = serializers.UUIDField(help_text="The run of the step.")
    step_id = serializers.CharField(help_text="The claimed step.")
    attempt = serializers.IntegerField(help_text="The attempt the lease is for.")
    lease_expires_at = serializers.DateTimeField(help_text="The new end of the lease.")


CLAIM_EXAMPLE = OpenApiExample("claim", request_only=True, value={
    "step_types": ["external:payments"], "max": 5, "wait_s": 20, "lease_s": 60})
TASKS_EXAMPLE = OpenApiExample("tasks", response_only=True, value={"tasks": [{
    "run_id": "5f0c9d52-3f8e-4a57-9a51-0c6f3a1d2b7e", "step_id": "pay", "attempt": 1,
    "workflow": "payments", "step_type": "external:payments", "input": {"amount": 500},
    "lease_token": "q3Vf…", "lease_expires_at": "2026-12-03T14:01:00Z"}]})
HEARTBEAT_EXAMPLE = OpenApiExample("heartbeat", request_only=True,
                                   value={"lease_token": "q3Vf…", "lease_s": 60})
LEASE_EXAMPLE = OpenApiExample("lease", response_only=True, value={
    "run_id": "5f0c9d52-3f8e-4a57-9a51-0c6f3a1d2b7e", "step_id": "pay", "attempt": 1,
    "lease_expires_at": "2026-12-03T14:02:00Z"})


class TaskClaim(APIView):
    required_scopes = {"POST": TASK_SCOPE}

    @extend_schema(summary="Claim external steps to execute", tags=[TAG], request=ClaimIn,
                   responses={200: ClaimOut, **ERROR_RESPONSES},
                   examples=[CLAIM_EXAMPLE, TASKS_EXAMPLE])
    def post(self, request):
        """Lease up to `max` running external steps nobody holds; with `wait_s`, wait for
        work to arrive. Two executors never get the same step."""
        data = ClaimIn(data=request.data)
        data.is_valid(raise_exception=True)
        tasks = claims.tasks_claim(tenant=request.principal.tenant,
                                   actor=request.principal.actor, **data.validated_data)
        return Response({"tasks": [task.as_dict() for task in tasks]})


class StepHeartbeat(APIView):
    required_scopes = {"POST": TASK_SCOPE}

    @extend_schema(summary="Extend a claimed step's lease", tags=[TAG], request=HeartbeatIn,
                   parameters=path_parameters("run_id", "step_id"),
                   responses={200: HeartbeatOut, **ERROR_RESPONSES},
                   examples=[HEARTBEAT_EXAMPLE, LEASE_EXAMPLE])
    def post(self, request, run_id, step_id):
        """Keep the lease while the step is executed; 409 `lease_lost` when it is not the
        step's live lease any more (expired, redelivered or reported)."""
        data = HeartbeatIn(data=request.data)
        data.is_valid(raise_exception=True)
        run = selectors.run_get(request.principal.tenant, run_id)
        lease = claims.lease_heartbeat(tenant=request.principal.tenant, run_id=run.run_id,
                                       step_id=step_id, **data.validated_data)
        return Response({"run_id": str(run.run_id), "step_id": step_id,
                         "attempt": lease.attempt,
                         "lease_expires_at": lease.expires_at.isoformat()})
