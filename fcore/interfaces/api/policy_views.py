"""`POST /workflows/policies/evaluate`: a dry run of the policies for one step."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from runs.previews import decision_preview

from . import examples as ex
from .serializers import ERROR_RESPONSES, JSONObjectField, StrictCharField, version_field


class EvaluateIn(serializers.Serializer):
    workflow = StrictCharField(max_length=200,
                               help_text="Name of a workflow the tenant has loaded.")
    version = version_field()
    step_id = StrictCharField(max_length=200,
                              help_text="The step to decide, e.g. `step_2`.")
    input = JSONObjectField(required=False, default=dict,
                            help_text="The run input to decide on (as `input`).")
    metadata = JSONObjectField(required=False, default=dict,
                               help_text="The run metadata to decide on (as `metadata`).")
    actor = serializers.RegexField(r"^(user|client|system):.+$", max_length=200,
                                   required=False, allow_null=True,
                                   help_text="`kind:id`; default: the caller")


class EvaluateOut(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["allow", "flag", "deny"],
                                       help_text="What the policies would decide.")
    reason = serializers.CharField(help_text="Why, from the rule that fired or the default.")
    policy_id = serializers.IntegerField(allow_null=True,
                                         help_text="The deciding policy; null: none applied.")
    policy_version = serializers.IntegerField(allow_null=True,
                                              help_text="Its current version.")
    tier = serializers.IntegerField(allow_null=True, help_text="Its tier.")
    rules_triggered = serializers.ListField(child=serializers.DictField(),
                                            help_text="The rules that fired.")
    policies = serializers.ListField(child=serializers.DictField(),
                                     help_text="Every policy evaluated, with its version.")
    gate = serializers.DictField(help_text="The gate settings a `flag` would open.")
    evaluation_us = serializers.IntegerField(help_text="Evaluation time in microseconds.")
    context = serializers.DictField(help_text="The context the rules saw (`input`, "
                                              "`metadata`, `step`, `actor`, …).")


class PolicyEvaluate(APIView):
    required_scopes = {"POST": "runs:read"}

    @extend_schema(
        summary="Dry-run the policies for a step", tags=["policies"], request=EvaluateIn,
        responses={200: EvaluateOut, **ERROR_RESPONSES},
        examples=[ex.request("a large amount at step_2", {
                      "workflow": "pt004_execution_spine", "step_id": "step_2",
                      "input": {"amount": 25000}}),
                  ex.response("flagged", ex.EVALUATE_OUT)])
    def post(self, request):
        """What the policies would decide for a step of a workflow; nothing is created."""
        data = EvaluateIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        decision, context = decision_preview(
            tenant=request.principal.tenant, workflow=v["workflow"], version=v.get("version"),
            step_id=v["step_id"], input=v["input"], metadata=v["metadata"],
            actor=v.get("actor") or request.principal.actor)
        return Response({
            "decision": decision.decision, "reason": decision.reason,
            "policy_id": decision.policy_id, "policy_version": decision.policy_version,
            "tier": decision.tier, "rules_triggered": decision.rules_triggered,
            "policies": decision.policies, "gate": decision.gate,
            "evaluation_us": decision.evaluation_us, "context": context})
