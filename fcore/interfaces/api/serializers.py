"""Input and output serializers of the run API. Input serializers only validate; the
services change state. Output serializers fix the field names of DESIGN §8."""

import functools

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from fcore.jsonlimits import json_problem
from gates.gate_settings import MAX_APPROVALS, MAX_EXPIRES_IN
from gates.models import Approval, Gate, PolicyDecision
from runs.models import Run, RunStatus, StepRun, StepStatus

from .schema import error_responses


@functools.cache
def _built(serializer_class) -> serializers.BaseSerializer:
    serializer = serializer_class()
    assert serializer.fields  # built now, once: rendering only reads them
    return serializer


def render(serializer_class, instance) -> dict:
    """What `serializer_class(instance).data` answers, from one serializer per class and
    process. DRF builds a serializer's fields, and those of every serializer nested in
    it, each time one is made, and for a run that was most of the cost of rendering it.
    An output serializer's `to_representation` only reads its fields, so the threads of
    a worker share the one built. Not for serializers that read `context`."""
    return _built(serializer_class).to_representation(instance)


def render_many(serializer_class, instances) -> list[dict]:
    serializer = _built(serializer_class)
    return [serializer.to_representation(instance) for instance in instances]


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

class StrictCharField(serializers.CharField):
    """A string field of a JSON body that takes only strings: DRF's CharField also takes a
    number (`0` becomes `"0"`), which the schema's `type: string` does not allow."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A number field of a JSON body that takes only numbers: DRF's FloatField also takes
    `false` (as 0.0) and numeric strings, which the schema's `type: number` does not allow."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


# Every integer a client sends reaches SQL, and the hot path (runs.engine.sql) binds it without
# Django's overflow guard: each is bounded to its column, so an overflow is a field error.
POSITIVE_INT_MAX = 2**31 - 1  # models.PositiveIntegerField, on every database


def version_field() -> serializers.IntegerField:
    """A workflow version as a client sends it (PositiveIntegerField's range)."""
    return serializers.IntegerField(min_value=1, max_value=POSITIVE_INT_MAX, required=False,
                                    allow_null=True,
                                    help_text="The workflow's version; omitted or null: the "
                                              "latest version the tenant has.")


CURSOR_HELP = "The page to read: the `cursor` of a `next` or `previous` link this API returned."
STEP_ID_HELP = "The step's id in the workflow definition (a map instance is `<id>[<i>]`)."


class RunCreateIn(serializers.Serializer):
    workflow = StrictCharField(max_length=200,
                               help_text="Name of a workflow the tenant has loaded.")
    version = version_field()
    input = JSONObjectField(required=False, default=dict,
                            help_text="The run's input, checked against the workflow's input "
                                      "schema when it has one; steps read it as `input`.")
    idempotency_key = StrictCharField(
        max_length=200, required=False, allow_null=True, allow_blank=False,
        help_text="Send the same key again with the same request to get the same run back "
                  "(200); with a different request it is a 409 `idempotency_conflict`.")
    metadata = JSONObjectField(required=False, default=dict,
                               help_text="Free JSON kept with the run (policies can read it "
                                         "as `metadata`); not hashed into receipts.")


class RunListQuery(serializers.Serializer):
    """Query parameters of `GET /workflows/runs` (checked: bad values are a 400)."""

    status = serializers.ChoiceField(choices=RunStatus.values, required=False,
                                     help_text="Only runs in this status.")
    workflow = serializers.CharField(max_length=200, required=False,
                                     help_text="Only runs of this workflow (its name).")
    created_by = serializers.CharField(max_length=200, required=False,
                                       help_text="Only runs created by this actor, e.g. "
                                                 "`client:harness`.")
    parent = serializers.UUIDField(
        required=False,
        help_text="Only the child runs that steps of this run started (`type: workflow`).")
    cursor = serializers.CharField(max_length=500, required=False, help_text=CURSOR_HELP)
    limit = serializers.IntegerField(min_value=1, max_value=200, required=False,
                                     help_text="Runs per page (default 50).")


class RunDetailQuery(serializers.Serializer):
    """Query parameters of `GET /workflows/runs/{run_id}` (checked: bad values are a 400)."""

    include_logs = serializers.BooleanField(
        required=False, default=False, help_text="Add the run's audit events (`logs`).")
    wait_s = serializers.FloatField(
        required=False, min_value=0, max_value=30,
        help_text="Wait up to this many seconds (0–30) for the run's audit stream to pass "
                  "`after_seq`; the answer comes as soon as it does, or after `wait_s` "
                  "unchanged. Needs `after_seq`.")
    after_seq = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1,
        help_text="The `audit_seq` of the run as last seen: the waiting read answers once "
                  "the stream is past it.")

    def validate(self, attrs):
        if "wait_s" in attrs and "after_seq" not in attrs:
            raise serializers.ValidationError({"after_seq": ["Required with wait_s."]})
        return attrs


class AuditListQuery(serializers.Serializer):
    """Query parameters of `GET /workflows/audit`."""

    stream = serializers.CharField(max_length=200, required=False,
                                   help_text="Only events of this stream, e.g. `run:<run_id>`.")
    run_id = serializers.UUIDField(required=False, help_text="Only events of this run.")
    code = serializers.CharField(max_length=16, required=False,
                                 help_text="Only events with this code, e.g. `FC-GATE-003`.")
    actor = serializers.CharField(max_length=200, required=False,
                                  help_text="Only events by this actor.")
    cursor = serializers.CharField(max_length=500, required=False, help_text=CURSOR_HELP)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False,
                                     help_text="Events per page (default 100).")


class RunStatusIn(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=RunStatus.values,
        help_text="The status to set: `paused`, `running` (resume), `cancelled` or `failed`; "
                  "any other, or one the run cannot reach from its status, is a 409 "
                  "`invalid_transition` listing what is allowed.")
    reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="",
                             help_text="Why, recorded in the audit trail (default: "
                                       "`operator set <status>`).")


class StepReportIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=[StepStatus.SUCCEEDED, StepStatus.FAILED],
                                     help_text="How the external step ended.")
    output = HashableJSONField(required=False, allow_null=True, default=None,
                               help_text="The step's output (JSON), hashed into its receipt; "
                                         "later steps read it as `steps.<id>.output`.")
    error = HashableJSONField(required=False, allow_null=True, default=None,
                              help_text="What went wrong, for a failed step (JSON).")
    attempt = serializers.IntegerField(
        min_value=1, max_value=POSITIVE_INT_MAX, required=False, allow_null=True,
        help_text="The attempt this report is for; a report for an older attempt is a 409 "
                  "`stale_attempt`. Omitted: the current attempt.")
    lease_token = StrictCharField(
        max_length=200, required=False, allow_null=True,
        help_text="The lease token of a claimed step (POST /workflows/tasks/claim); "
                  "omit it for a step nobody claimed.")


class GateRequestIn(serializers.Serializer):
    step_id = StrictCharField(max_length=200, required=False, allow_null=True,
                              help_text="The step the gate holds (pending or running); "
                                        "omitted: the gate holds the whole run.")
    reason = StrictCharField(max_length=1000,
                             help_text="Why approval is needed, shown to approvers.")
    required_approvals = serializers.IntegerField(
        min_value=1, max_value=MAX_APPROVALS, required=False,
        help_text="How many distinct approvers must approve (default 1).")
    approver_group = StrictCharField(max_length=150, required=False,
                                     help_text="Only members of this tenant group may "
                                               "vote (default `approvers`).")
    expires_in = serializers.IntegerField(
        min_value=1, max_value=MAX_EXPIRES_IN, required=False, allow_null=True,
        help_text="Seconds until the gate times out; null or omitted: never.")
    on_timeout = serializers.ChoiceField(choices=["reject", "escalate"], required=False,
                                         help_text="What a timeout does: reject the gate, "
                                                   "or hand it to `escalate_to`.")
    escalate_to = StrictCharField(max_length=150, required=False, allow_blank=True,
                                  help_text="The group a timed-out gate escalates to.")
    input_schema = JSONObjectField(required=False, allow_null=True,
                                   help_text="A JSON Schema the approver's `input` must match.")

    GATE_FIELDS = ("required_approvals", "approver_group", "expires_in", "on_timeout",
                   "escalate_to", "input_schema")


class GateVoteIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "reject"],
                                       help_text="The vote; one reject rejects the gate.")
    comment = StrictCharField(max_length=4000, required=False, allow_blank=True,
                              default="", help_text="Why, kept with the vote.")
    input = HashableJSONField(required=False, allow_null=True, default=None,
                              help_text="Data the approver adds (must match the gate's "
                                        "`input_schema` when it has one).")


# --- output ------------------------------------------------------------------------------

HASH_HELP = "SHA-256, lower-case hex, of the RFC 8785 canonical JSON of {}."
AT_HELP = "When {} (ISO 8601, UTC)."


class StepOut(serializers.ModelSerializer):
    class Meta:
        model = StepRun
        fields = ["step_id", "step_type", "index", "after", "status", "attempt", "decision",
                  "started_at", "ended_at", "input_hash", "output_hash", "receipt_hash",
                  "output", "error"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "step_id": {"help_text": STEP_ID_HELP},
            "step_type": {"help_text": "How the step runs: `external` (an executor reports "
                                       "it through the API), `approval`, `http`, "
                                       "`python:<handler>`, `map`, `workflow` (a child run), …"},
            "index": {"help_text": "Position of the step in the definition, from 0."},
            "after": {"help_text": "Ids of the steps this one waits for."},
            "status": {"help_text": "Where the step is now."},
            "attempt": {"help_text": "The current attempt, from 1 (retries add one)."},
            "decision": {"help_text": "The policy decision it ran under: `allow`, `flag`, "
                                      "`deny`; empty until decided."},
            "started_at": {"help_text": AT_HELP.format("the current attempt started")},
            "ended_at": {"help_text": AT_HELP.format("the step ended")},
            "input_hash": {"help_text": HASH_HELP.format("the step's input")},
            "output_hash": {"help_text": HASH_HELP.format("the step's output")},
            "receipt_hash": {"help_text": "The step's receipt hash, chaining it to the "
                                          "previous receipt (docs/audit-format.md)."},
            "output": {"help_text": "The step's output (JSON); null until it succeeded."},
            "error": {"help_text": "What went wrong (JSON) for a failed step; else null."},
        }


class DecisionOut(serializers.ModelSerializer):
    step_id = serializers.CharField(source="step_run.step_id", help_text=STEP_ID_HELP)
    policy_id = serializers.IntegerField(allow_null=True,
                                         help_text="The policy that decided; null: no policy "
                                                   "applied (the default allow).")

    class Meta:
        model = PolicyDecision
        fields = ["step_id", "attempt", "decision", "reason", "policy_id", "policy_version",
                  "tier", "rules_triggered", "policies", "evaluated_at", "evaluation_us"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "attempt": {"help_text": "The step attempt the decision was for."},
            "decision": {"help_text": "`allow` runs the step, `flag` opens an approval gate "
                                      "first, `deny` fails the run."},
            "reason": {"help_text": "Why, from the rule that fired or the default."},
            "policy_version": {"help_text": "The version of that policy, as it was then."},
            "tier": {"help_text": "The deciding policy's tier (lower tiers are evaluated "
                                  "first)."},
            "rules_triggered": {"help_text": "The rules that fired: `{policy, rule, effect, "
                                             "…}` each."},
            "policies": {"help_text": "Every policy evaluated, with its version."},
            "evaluated_at": {"help_text": AT_HELP.format("the policies were evaluated")},
            "evaluation_us": {"help_text": "How long the evaluation took, in microseconds."},
        }


class ApprovalOut(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at", help_text=AT_HELP.format("it was cast"))

    class Meta:
        model = Approval
        fields = ["actor", "decision", "comment", "input", "at"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "actor": {"help_text": "Who voted, e.g. `user:alice` or `client:second_approver`."},
            "decision": {"help_text": "The vote."},
            "comment": {"help_text": "The voter's comment."},
            "input": {"help_text": "Data the voter added (JSON), or null."},
        }


class GateOut(serializers.ModelSerializer):
    gate_id = serializers.IntegerField(source="id", help_text="The gate's id.")
    step_id = serializers.CharField(allow_null=True,
                                    help_text="The step it holds; null: it holds the whole run.")
    run_id = serializers.UUIDField(source="run.run_id", help_text="The gate's run.")
    approvals = ApprovalOut(many=True, help_text="Every vote cast, oldest first.")

    class Meta:
        model = Gate
        fields = ["gate_id", "run_id", "step_id", "status", "source", "reason",
                  "required_approvals", "approvals", "requested_by", "approver_group",
                  "expires_at", "on_timeout", "escalate_to", "input_schema", "resolution",
                  "needs_review", "reviewed_by", "reviewed_at", "review_note", "created_at",
                  "resolved_at"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "status": {"help_text": "`open` until it resolves."},
            "source": {"help_text": "What opened it: `policy` (a flag decision), "
                                    "`approval_step` or `api`."},
            "reason": {"help_text": "Why approval is needed."},
            "required_approvals": {"help_text": "How many distinct approvers must approve."},
            "requested_by": {"help_text": "The actor who opened it."},
            "approver_group": {"help_text": "The tenant group whose members may vote."},
            "expires_at": {"help_text": AT_HELP.format("it times out") + " Null: never."},
            "on_timeout": {"help_text": "What a timeout does: `reject` or `escalate`."},
            "escalate_to": {"help_text": "The group a timed-out gate escalates to."},
            "input_schema": {"help_text": "A JSON Schema votes' `input` must match, or null."},
            "resolution": {"help_text": "How it resolved (`{by, decision, …}`); null while "
                                        "open."},
            "needs_review": {"help_text": "True after a break-glass override until someone "
                                          "else reviews it."},
            "reviewed_by": {"help_text": "Who reviewed the override."},
            "reviewed_at": {"help_text": AT_HELP.format("the override was reviewed")},
            "review_note": {"help_text": "The reviewer's note."},
            "created_at": {"help_text": AT_HELP.format("it was opened")},
            "resolved_at": {"help_text": AT_HELP.format("it resolved")},
        }


class EventOut(serializers.ModelSerializer):
    """An event; one whose stored data cannot be read (`audit.stored`) has `data: null` and
    `unreadable: {"data": reason}`, a field only such events have."""

    stream = serializers.CharField(source="stream.name",
                                   help_text="The hash chain it belongs to, e.g. `run:<id>`.")
    message = serializers.CharField(help_text="The event in words.")

    class Meta:
        model = AuditEvent
        fields = ["stream", "seq", "code", "message", "actor", "at", "data", "prev_hash",
                  "hash"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "seq": {"help_text": "Its position in the stream, from 1."},
            "code": {"help_text": "The event code, e.g. `FC-RUN-001` (docs/audit-format.md)."},
            "actor": {"help_text": "Who caused it, e.g. `client:harness`, `system:engine`."},
            "at": {"help_text": AT_HELP.format("it happened")},
            "data": {"help_text": "The event's details (JSON), exactly as hashed."},
            "prev_hash": {"help_text": "The hash of the stream's previous event (the genesis "
                                       "hash for seq 1)."},
            "hash": {"help_text": "This event's hash over prev_hash and its canonical fields."},
        }

    def to_representation(self, instance):
        item = super().to_representation(instance)
        reason = getattr(instance, "unreadable", None)
        if reason:
            item["data"], item["unreadable"] = None, {"data": reason}
        return item


class RunParentOut(serializers.Serializer):
    run_id = serializers.UUIDField(source="parent_run_id",
                                   help_text="The run whose step started this one.")
    step_id = serializers.CharField(source="parent_step_id",
                                    help_text="The `type: workflow` step that started it.")


class RunSummaryOut(serializers.ModelSerializer):
    tenant_id = serializers.CharField(source="tenant.slug", help_text="The tenant's slug.")
    workflow = serializers.CharField(source="definition.name", help_text="The workflow's name.")
    workflow_version = serializers.IntegerField(source="definition.version",
                                                help_text="The version it runs, pinned at "
                                                          "creation.")
    parent = serializers.SerializerMethodField(
        help_text="The run and step that started this one as a child run, or null.")

    class Meta:
        model = Run
        fields = ["run_id", "tenant_id", "workflow", "workflow_version", "status",
                  "status_reason", "paused_for_gate", "current_step", "step_index", "input",
                  "output", "metadata", "created_by", "idempotency_key", "created_at", "updated_at",
                  "started_at", "ended_at", "workflow_hash", "parent"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "run_id": {"help_text": "The run's id (UUID)."},
            "status": {"help_text": "Where the run is now."},
            "status_reason": {"help_text": "Why it has that status, in words."},
            "paused_for_gate": {"help_text": "True when a gate (not an operator) paused it: "
                                             "the gate's approval resumes it."},
            "current_step": {"help_text": "The step it is at (empty before the first)."},
            "step_index": {"help_text": "How many steps have ended."},
            "input": {"help_text": "The run's input."},
            "output": {"help_text": "The run's output once completed; else null."},
            "metadata": {"help_text": "The metadata sent at creation."},
            "created_by": {"help_text": "The actor who created it."},
            "idempotency_key": {"help_text": "The idempotency key sent at creation, or null."},
            "created_at": {"help_text": AT_HELP.format("it was created")},
            "updated_at": {"help_text": AT_HELP.format("it last changed")},
            "started_at": {"help_text": AT_HELP.format("its first step started")},
            "ended_at": {"help_text": AT_HELP.format("it ended")},
            "workflow_hash": {"help_text": "The seal over every receipt, set when the run "
                                           "ends (FC-RUN-003); empty before."},
        }

    @extend_schema_field(RunParentOut(allow_null=True))
    def get_parent(self, run) -> dict | None:
        return RunParentOut(run).data if run.parent_run_id is not None else None


class RunOut(RunSummaryOut):
    """A run with its parts; the view attaches `steps_list`, `decisions_list`,
    `gates_list`, `children_list` and, with `?include_logs=true`, `logs_list`."""

    steps = StepOut(many=True, source="steps_list", help_text="Its steps, in order.")
    decisions = DecisionOut(many=True, source="decisions_list",
                            help_text="Every policy decision, oldest first.")
    gates = GateOut(many=True, source="gates_list", help_text="Its gates, oldest first.")
    children = serializers.ListField(
        child=serializers.UUIDField(), source="children_list", read_only=True,
        help_text="The child runs its `type: workflow` steps started, oldest first.")
    logs = EventOut(many=True, source="logs_list", required=False,
                    help_text="Its audit events; only with `?include_logs=true`.")
    audit_seq = serializers.IntegerField(
        required=False,
        help_text="Seq of the run's audit stream, read with the run in one statement: "
                  "pass it as `after_seq` with `wait_s` to wait for the next change. "
                  "In `GET /workflows/runs/{run_id}` answers only.")

    class Meta(RunSummaryOut.Meta):
        fields = RunSummaryOut.Meta.fields + ["children", "steps", "decisions", "gates",
                                              "logs", "audit_seq"]
        # `logs` and `audit_seq` are left out of an answer whose run lacks the attribute
        # (DRF skips a field that is not required and whose source is missing)


class ReceiptOut(serializers.Serializer):
    step_id = serializers.CharField(help_text=STEP_ID_HELP)
    attempt = serializers.IntegerField(help_text="The attempt the receipt is for.")
    receipt_seq = serializers.IntegerField(help_text="Its position in the run's receipt chain.")
    input_hash = serializers.CharField(help_text=HASH_HELP.format("the step's input"))
    output_hash = serializers.CharField(
        allow_null=True,
        help_text=HASH_HELP.format("the step's output") + " Null for a failed step.")
    decision = serializers.CharField(help_text="The policy decision it ran under.")
    policy_versions = serializers.JSONField(help_text="The policies and versions evaluated.")
    prev_receipt_hash = serializers.CharField(help_text="The previous receipt's hash.")
    receipt_hash = serializers.CharField(help_text="This receipt's hash, recomputed.")


class ReceiptReportOut(serializers.Serializer):
    verified = serializers.BooleanField(help_text="True when every receipt and the seal "
                                                  "recompute from the stored rows.")
    workflow_hash = serializers.CharField(allow_null=True,
                                          help_text="The run's seal; null before it ends.")
    receipts = ReceiptOut(many=True, help_text="The receipts, in chain order.")
    failures = serializers.ListField(child=serializers.DictField(),
                                     help_text="What did not recompute: `{step_id, attempt, "
                                               "problem}` each (empty when verified).")


class ChainReportOut(serializers.Serializer):
    ok = serializers.BooleanField(help_text="True when every chain and checkpoint verifies.")
    streams = serializers.IntegerField(help_text="How many streams were walked.")
    events = serializers.IntegerField(help_text="How many events were re-hashed.")
    checkpoints = serializers.IntegerField(required=False,
                                           help_text="How many signed checkpoints were "
                                                     "checked.")
    keys = serializers.ListField(child=serializers.CharField(), required=False,
                                 help_text="The ids of the keys whose signatures were checked.")
    failures = serializers.ListField(child=serializers.DictField(),
                                     help_text="Each break found: `{stream, seq, problem}`.")


# Every API operation may answer these in the error shape (`schema.error_responses`).
ERROR_RESPONSES = error_responses(400, 401, 403, 404, 409, 429)


class EvidencePackOut(serializers.Serializer):
    """The evidence pack (`fc-evidence/2`, docs/audit-format.md): everything needed to check
    the run offline with `python -m audit.verify_pack`. Its sections are described here by
    name; their full layout is in docs/audit-format.md."""

    format = serializers.CharField(help_text="The pack's format: `fc-evidence/2`.")
    generated_at = serializers.CharField(help_text=AT_HELP.format("the pack was made"))
    run = RunSummaryOut(help_text="The run, as in GET /workflows/runs.")
    definition = serializers.DictField(required=False,
                                       help_text="The pinned workflow definition: `{name, "
                                                 "version, steps, spec_hash, output?}`.")
    steps = serializers.ListField(child=serializers.DictField(), required=False,
                                  help_text="The steps with their inputs, outputs and hashes.")
    decisions = serializers.ListField(child=serializers.DictField(), required=False,
                                      help_text="Every policy decision with its context.")
    gates = serializers.ListField(child=serializers.DictField(), required=False,
                                  help_text="Every gate with every vote.")
    events = serializers.ListField(child=serializers.DictField(), required=False,
                                   help_text="Every event of the run's stream, as hashed.")
    stream = serializers.DictField(required=False,
                                   help_text="The stream's name, head seq and head hash.")
    receipts = serializers.ListField(child=serializers.DictField(), required=False,
                                     help_text="The step receipts, in chain order.")
    workflow_hash = serializers.CharField(allow_null=True, required=False,
                                          help_text="The run's seal; null before it ends.")
    verification = serializers.DictField(required=False,
                                         help_text="The server's own check of the receipts.")
    checkpoint = serializers.DictField(allow_null=True, required=False,
                                       help_text="The covering signed checkpoint with its "
                                                 "Merkle inclusion proof; null without a "
                                                 "signing key.")
    checkpoint_note = serializers.CharField(allow_null=True, required=False,
                                            help_text="Why `checkpoint` is null, else null.")
    attestation = serializers.DictField(allow_null=True, required=False,
                                        help_text="The signed digest of every field; null "
                                                  "without a signing key.")
