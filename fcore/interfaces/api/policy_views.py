"""`POST /workflows/policies/evaluate`: a dry run of the policies for one step."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from runs.previews import decision_preview

from .serializers import ERROR_RESPONSES, JSONObjectField, version_field


class EvaluateIn(serializers.Serializer):
    workflow = serializers.CharField(max_length=200)
    version = version_field()
    step_id = serializers.CharField(max_length=200)
    input = JSONObjectField(required=False, default=dict)
    metadata = JSONObjectField(required=False, default=dict)
    actor = serializers.RegexField(r"^(user|client|system):.+$", max_length=200,
                                   required=False, allow_null=True,
                                   help_text="`kind:id`; default: the caller")


class EvaluateOut(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["allow", "flag", "deny"])
    reason = serializers.CharField()
    policy_id = serializers.IntegerField(allow_null=True)
    policy_version = serializers.IntegerField(allow_null=True)
    tier = serializers.IntegerField(allow_null=True)
    rules_triggered = serializers.ListField(child=serializers.DictField())
    policies = serializers.ListField(child=serializers.DictField())
    gate = serializers.DictField()
    evaluation_us = serializers.IntegerField()
    context = serializers.DictField()


class PolicyEvaluate(APIView):
    required_scopes = {"POST": "runs:read"}

    @extend_schema(request=EvaluateIn,
                   responses={200: EvaluateOut, **ERROR_RESPONSES})
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
