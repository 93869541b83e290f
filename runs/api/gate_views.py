"""Break-glass override of a gate through the API (PT-005 item 7).

Only people may override: a session user holding the `gates.override_gate` permission and
a membership of the run's tenant. Machine clients never override (403), whatever scopes
their token carries.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from fcore.errors import Forbidden
from runs import selectors, services

from . import serializers as s

OVERRIDE_PERMISSION = "gates.override_gate"


class GateOverrideIn(serializers.Serializer):
    justification = serializers.CharField(max_length=4000, allow_blank=True)


class GateOverride(APIView):
    required_scopes: dict = {}  # a permission, not a scope, decides (see below)

    @extend_schema(request=GateOverrideIn,
                   responses={200: s.GateOut, **s.ERROR_RESPONSES})
    def post(self, request, run_id, gate_id):
        """Force an open gate through (break-glass) with a justification; `FC-GATE-005`.

        The run moves as after an approval; the gate is marked `needs_review`."""
        principal = request.principal
        if principal.is_machine:
            raise Forbidden("Machine clients cannot override gates; break-glass is for "
                            "people with the override permission.")
        serializer = GateOverrideIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = selectors.run_get(principal.tenant, run_id)
        gate = services.run_gate_override(
            tenant=principal.tenant, run_id=run.run_id, gate_id=gate_id,
            actor=principal.actor, justification=serializer.validated_data["justification"],
            allowed=request.user.has_perm(OVERRIDE_PERMISSION))
        return Response(s.GateOut(selectors.gate_get(principal.tenant, gate.id)).data)
