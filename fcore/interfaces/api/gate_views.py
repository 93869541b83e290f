"""Break-glass override of a gate through the API (PT-005 item 7), and its review.

Only people may override: a session user holding the `gates.override_gate` permission and
a membership of the run's tenant. Machine clients never override (403), whatever scopes
their token carries. Reviewing an override is the same kind of act: people holding
`gates.review_override`, never the one who overrode the gate.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from fcore.errors import Forbidden
from gates.services import REVIEW_NOTE_MAX
from runs import selectors, services

from . import examples as ex
from . import serializers as s
from .schema import path_parameters


class GateOverrideIn(serializers.Serializer):
    justification = s.StrictCharField(max_length=4000, allow_blank=True,
                                      help_text="Why the gate is forced through; "
                                                "required (blank is a 400).")


class GateOverrideReviewIn(serializers.Serializer):
    note = s.StrictCharField(max_length=REVIEW_NOTE_MAX, allow_blank=True,
                             help_text="What the reviewer found; required (blank is a "
                                       "400).")


OVERRIDDEN = {**ex.GATE, "status": "overridden", "needs_review": True, "resolved_at": ex.AT,
              "resolution": {"decision": "overridden", "by": "user:ops_lead",
                             "justification": "payroll deadline; approver on leave"}}


def _person_acts_on_gate(request, run_id, act: str, payload: type[serializers.Serializer],
                         service) -> Response:
    """People only (403 for a machine client, whatever its scopes); the body checked by
    `payload`; then `service(tenant, run_id, actor, data, user)` on the tenant's run, and the
    gate as it is now."""
    principal = request.principal
    if principal.is_machine:
        raise Forbidden(f"Machine clients cannot {act}; that is for people with the "
                        "permission.")
    serializer = payload(data=request.data)
    serializer.is_valid(raise_exception=True)
    run = selectors.run_get(principal.tenant, run_id)
    gate = service(principal.tenant, run.run_id, principal.actor, serializer.validated_data,
                   request.user)
    return Response(s.render(s.GateOut, selectors.gate_get(principal.tenant, gate.id)))


class GateOverride(APIView):
    required_scopes: dict = {}  # a permission, not a scope, decides (see below)

    @extend_schema(
        summary="Override a gate (break-glass)", tags=["gates"],
        parameters=path_parameters("run_id", "gate_id"), request=GateOverrideIn,
        responses={200: s.GateOut, **s.ERROR_RESPONSES},
        examples=[ex.request("override", {"justification": "payroll deadline; approver on "
                                                           "leave"}),
                  ex.response("overridden, awaiting review", OVERRIDDEN)])
    def post(self, request, run_id, gate_id):
        """Force an open gate through (break-glass) with a justification; `FC-GATE-005`.

        The run moves as after an approval; the gate is marked `needs_review`."""
        return _person_acts_on_gate(
            request, run_id, "override gates", GateOverrideIn,
            lambda tenant, run_id, actor, data, user: services.run_gate_override(
                tenant=tenant, run_id=run_id, gate_id=gate_id, actor=actor,
                justification=data["justification"], user=user))


class GateOverrideReview(APIView):
    required_scopes: dict = {}  # a permission, not a scope, decides (see below)

    @extend_schema(
        summary="Review a break-glass override", tags=["gates"],
        parameters=path_parameters("run_id", "gate_id"), request=GateOverrideReviewIn,
        responses={200: s.GateOut, **s.ERROR_RESPONSES},
        examples=[ex.request("review", {"note": "justified; approver confirmed afterwards"}),
                  ex.response("reviewed", {**OVERRIDDEN, "needs_review": False,
                                           "reviewed_by": "user:auditor",
                                           "reviewed_at": ex.AT,
                                           "review_note": "justified; approver confirmed "
                                                          "afterwards"})])
    def post(self, request, run_id, gate_id):
        """Mark a break-glass override reviewed with a note; `FC-GATE-006`.

        409 `not_overridden` or `already_reviewed`; 403 `four_eyes` for the one who
        overrode it."""
        return _person_acts_on_gate(
            request, run_id, "review overrides", GateOverrideReviewIn,
            lambda tenant, run_id, actor, data, user: services.run_gate_override_review(
                tenant=tenant, run_id=run_id, gate_id=gate_id, actor=actor,
                note=data["note"], user=user))
