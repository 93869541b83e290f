"""Input and output serializers of the run API. Input serializers only validate; the
services change state. Output serializers fix the field names of DESIGN §8."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from fcore.jsonlimits import json_problem
from gates.gate_settings import MAX_APPROVALS, MAX_EXPIRES_IN
from gates.models import Approval, Gate, PolicyDecision
from runs.models import Run, RunStatus, StepRun, StepStatus


@extend_schema_field({})
class HashableJSONField(serializers.JSONField):
    """A JSON value that can be hashed with RFC 8785 (safe integers, finite numbers)."""

    default_error_messages = {"not_hashable": "{problem}"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = json_problem(value)
        if problem:
            self.fail("not_hashable", problem=problem)
        return value


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(HashableJSONField):
    """A hashable JSON value that must be an object."""

    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        return value


# --- input -------------------------------------------------------------------------------

# Every integer a client sends reaches SQL, and the hot path (runs.engine.sql) binds it without
# Django's overflow guard: each is bounded to its column, so an overflow is a field error.
POSITIVE_INT_MAX = 2**31 - 1  # models.PositiveIntegerField, on every database


def version_field() -> serializers.IntegerField:
    """A workflow version as a client sends it (PositiveIntegerField's range)."""
    return serializers.IntegerField(min_value=1, max_value=POSITIVE_INT_MAX, required=False,
                                    allow_null=True)


class RunCreateIn(serializers.Serializer):
    workflow = serializers.CharField(max_length=200)
    version = version_field()
    input = JSONObjectField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_null=True,
                                            allow_blank=False)
    metadata = JSONObjectField(required=False, default=dict)


class RunListQuery(serializers.Serializer):
    """Query parameters of `GET /workflows/runs` (checked: bad values are a 400)."""

    status = serializers.ChoiceField(choices=RunStatus.values, required=False)
    workflow = serializers.CharField(max_length=200, required=False)
    created_by = serializers.CharField(max_length=200, required=False)
    cursor = serializers.CharField(max_length=500, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=200, required=False)


class AuditListQuery(serializers.Serializer):
    """Query parameters of `GET /workflows/audit`."""

    stream = serializers.CharField(max_length=200, required=False)
    run_id = serializers.UUIDField(required=False)
    code = serializers.CharField(max_length=16, required=False)
    actor = serializers.CharField(max_length=200, required=False)
    cursor = serializers.CharField(max_length=500, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False)


class RunStatusIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=RunStatus.values)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class StepReportIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=[StepStatus.SUCCEEDED, StepStatus.FAILED])
    output = HashableJSONField(required=False, allow_null=True, default=None)
    error = HashableJSONField(required=False, allow_null=True, default=None)
    attempt = serializers.IntegerField(min_value=1, max_value=POSITIVE_INT_MAX, required=False,
                                       allow_null=True)


class GateRequestIn(serializers.Serializer):
    step_id = serializers.CharField(max_length=200, required=False, allow_null=True)
    reason = serializers.CharField(max_length=1000)
    required_approvals = serializers.IntegerField(min_value=1, max_value=MAX_APPROVALS,
                                                  required=False)
    approver_group = serializers.CharField(max_length=150, required=False)
    expires_in = serializers.IntegerField(min_value=1, max_value=MAX_EXPIRES_IN, required=False,
                                          allow_null=True)
    on_timeout = serializers.ChoiceField(choices=["reject", "escalate"], required=False)
    escalate_to = serializers.CharField(max_length=150, required=False, allow_blank=True)
    input_schema = JSONObjectField(required=False, allow_null=True)

    GATE_FIELDS = ("required_approvals", "approver_group", "expires_in", "on_timeout",
                   "escalate_to", "input_schema")


class GateVoteIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True,
                                    default="")
    input = HashableJSONField(required=False, allow_null=True, default=None)


# --- output ------------------------------------------------------------------------------

class StepOut(serializers.ModelSerializer):
    class Meta:
        model = StepRun
        fields = ["step_id", "step_type", "index", "after", "status", "attempt", "decision",
                  "started_at", "ended_at", "input_hash", "output_hash", "receipt_hash",
                  "output", "error"]


class DecisionOut(serializers.ModelSerializer):
    step_id = serializers.CharField(source="step_run.step_id")
    policy_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = PolicyDecision
        fields = ["step_id", "attempt", "decision", "reason", "policy_id", "policy_version",
                  "tier", "rules_triggered", "policies", "evaluated_at", "evaluation_us"]


class ApprovalOut(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Approval
        fields = ["actor", "decision", "comment", "input", "at"]


class GateOut(serializers.ModelSerializer):
    gate_id = serializers.IntegerField(source="id")
    step_id = serializers.CharField(allow_null=True)
    run_id = serializers.UUIDField(source="run.run_id")
    approvals = ApprovalOut(many=True)

    class Meta:
        model = Gate
        fields = ["gate_id", "run_id", "step_id", "status", "source", "reason",
                  "required_approvals", "approvals", "requested_by", "approver_group",
                  "expires_at", "on_timeout", "escalate_to", "input_schema", "resolution",
                  "needs_review", "reviewed_by", "reviewed_at", "review_note", "created_at",
                  "resolved_at"]


class EventOut(serializers.ModelSerializer):
    """An event; one whose stored data cannot be read (`audit.stored`) has `data: null` and
    `unreadable: {"data": reason}`, a field only such events have."""

    stream = serializers.CharField(source="stream.name")
    message = serializers.CharField()

    class Meta:
        model = AuditEvent
        fields = ["stream", "seq", "code", "message", "actor", "at", "data", "prev_hash",
                  "hash"]

    def to_representation(self, instance):
        item = super().to_representation(instance)
        reason = getattr(instance, "unreadable", None)
        if reason:
            item["data"], item["unreadable"] = None, {"data": reason}
        return item


class RunSummaryOut(serializers.ModelSerializer):
    tenant_id = serializers.CharField(source="tenant.slug")
    workflow = serializers.CharField(source="definition.name")
    workflow_version = serializers.IntegerField(source="definition.version")

    class Meta:
        model = Run
        fields = ["run_id", "tenant_id", "workflow", "workflow_version", "status",
                  "status_reason", "paused_for_gate", "current_step", "step_index", "input",
                  "output", "metadata", "created_by", "idempotency_key", "created_at", "updated_at",
                  "started_at", "ended_at", "workflow_hash"]


class RunOut(RunSummaryOut):
    """A run with its parts; the view attaches `steps_list`, `decisions_list`,
    `gates_list` and, with `?include_logs=true`, `logs_list`."""

    steps = StepOut(many=True, source="steps_list")
    decisions = DecisionOut(many=True, source="decisions_list")
    gates = GateOut(many=True, source="gates_list")
    logs = EventOut(many=True, source="logs_list", required=False)

    class Meta(RunSummaryOut.Meta):
        fields = RunSummaryOut.Meta.fields + ["steps", "decisions", "gates", "logs"]

    def to_representation(self, instance):
        if not hasattr(instance, "logs_list"):
            self.fields.pop("logs", None)
        return super().to_representation(instance)


class ReceiptOut(serializers.Serializer):
    step_id = serializers.CharField()
    attempt = serializers.IntegerField()
    receipt_seq = serializers.IntegerField()
    input_hash = serializers.CharField()
    output_hash = serializers.CharField(
        allow_null=True, help_text="sha256 of the JCS of the output; null for a failed step")
    decision = serializers.CharField()
    policy_versions = serializers.JSONField()
    prev_receipt_hash = serializers.CharField()
    receipt_hash = serializers.CharField()


class ReceiptReportOut(serializers.Serializer):
    verified = serializers.BooleanField()
    workflow_hash = serializers.CharField(allow_null=True)
    receipts = ReceiptOut(many=True)
    failures = serializers.ListField(child=serializers.DictField())


class ChainReportOut(serializers.Serializer):
    ok = serializers.BooleanField()
    streams = serializers.IntegerField()
    events = serializers.IntegerField()
    checkpoints = serializers.IntegerField(required=False)
    keys = serializers.ListField(child=serializers.CharField(), required=False)
    failures = serializers.ListField(child=serializers.DictField())


class ErrorOut(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


# Every API operation may answer these in the error shape.
ERROR_RESPONSES = {status: ErrorOut for status in (400, 401, 403, 404, 409, 429)}
