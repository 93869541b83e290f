"""Audit endpoints: verifying the tenant's chains (inline, or as a background job), and the
public keys that sign checkpoints."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import note, signing
from audit.log import log_origin
from audit.models import AuditVerification, SigningKey
from audit.verifications import audit_verification_request, audit_verifications_for_tenant
from audit.verify import audit_verify
from fcore.errors import NotFound

from . import examples as ex
from .schema import error_responses, path_parameters
from .serializers import ERROR_RESPONSES, ChainReportOut

READ_ERRORS = error_responses(400, 401, 403, 404, 429)


class SigningKeyOut(serializers.ModelSerializer):
    algorithm = serializers.SerializerMethodField(help_text="Always `Ed25519`.")
    name = serializers.SerializerMethodField(
        help_text="The key's C2SP signed-note key name: the tenant's log origin.")
    vkey = serializers.SerializerMethodField(
        help_text="The C2SP verifier key `name+hash+base64(0x01 || key)` (what "
                  "golang.org/x/mod/sumdb/note.NewVerifier reads).")

    class Meta:
        model = SigningKey
        fields = ["key_id", "algorithm", "public_key", "name", "vkey", "created_at",
                  "retired_at"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "key_id": {"help_text": "The key's id, named by the checkpoints it signed."},
            "public_key": {"help_text": "The raw 32-byte Ed25519 public key, base64."},
            "created_at": {"help_text": "When the key was registered (ISO 8601, UTC)."},
            "retired_at": {"help_text": "When it stopped signing; null: it signs now."},
        }

    def get_algorithm(self, obj) -> str:
        return "Ed25519"

    def get_name(self, obj) -> str:
        return self.context["origin"]

    def get_vkey(self, obj) -> str:
        return note.verifier_key(self.context["origin"], signing.b64decode(obj.public_key))


class AuditKeys(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(summary="List the checkpoint signing keys", tags=["audit"],
                   responses={200: SigningKeyOut(many=True), **READ_ERRORS},
                   examples=[ex.response("one key", [ex.SIGNING_KEY])])
    def get(self, request):
        """The Ed25519 public keys that sign checkpoints (base64 of the raw 32 bytes), with
        their ids; a retired key still verifies the checkpoints it signed. Keys are
        registered at start-up, by `register_signing_key` and before a checkpoint is
        sealed; this read registers nothing."""
        keys = SigningKey.objects.order_by("created_at", "id")
        origin = log_origin(request.principal.tenant.slug)
        return Response(SigningKeyOut(keys, many=True, context={"origin": origin}).data)


class AuditVerificationOut(serializers.ModelSerializer):
    verification_id = serializers.IntegerField(
        source="pk", help_text="Id of this verification: GET /workflows/audit/verify/{id}.")
    report = ChainReportOut(
        allow_null=True, help_text="What the walk found, once `status` is `done` "
                                   "(the same shape as GET /workflows/audit/verify).")

    class Meta:
        model = AuditVerification
        fields = ["verification_id", "status", "requested_by", "requested_at", "started_at",
                  "finished_at", "report", "error"]
        read_only_fields = fields  # an answer: every field is always there
        extra_kwargs = {
            "status": {"help_text": "pending → running → done (the walk finished; `report` "
                                    "says whether the chains verify) or failed (the walk "
                                    "could not finish; `error` says why)."},
            "requested_by": {"help_text": "The actor who asked for it."},
            "requested_at": {"help_text": "When it was asked for."},
            "started_at": {"help_text": "When a worker started the walk."},
            "finished_at": {"help_text": "When the walk ended (done or failed)."},
            "error": {"help_text": "Why the walk could not finish (status failed)."},
        }


def _verification_response(verification, status=http.HTTP_200_OK) -> Response:
    response = Response(AuditVerificationOut(verification).data, status=status)
    response["Location"] = f"/workflows/audit/verify/{verification.pk}"
    return response


class AuditVerify(APIView):
    required_scopes = {"GET": "audit:read", "POST": "audit:read"}

    @extend_schema(summary="Verify the tenant's audit chains now", tags=["audit"],
                   responses={200: ChainReportOut, **READ_ERRORS},
                   examples=[ex.response("intact", ex.CHAIN_REPORT)])
    def get(self, request):
        """Re-walk every chain of the tenant and check it against the signed checkpoints,
        inside this request: `{ok, streams, events, checkpoints, keys, failures[]}`. Over a
        large trail this outlasts a web time-out: POST starts the same walk in the
        background."""
        report = audit_verify(tenant_ids=[request.principal.tenant.id])
        return Response(report.as_dict())

    @extend_schema(operation_id="workflows_audit_verify_start", request=None,
                   summary="Start a background verification", tags=["audit"],
                   responses={202: AuditVerificationOut, **ERROR_RESPONSES},
                   examples=[ex.response("queued", ex.VERIFICATION, 202)])
    def post(self, request):
        """Start a background verification of the tenant's chains (202, `Location` names
        it); while one is pending or running, that one is answered instead."""
        verification, _ = audit_verification_request(tenant_id=request.principal.tenant.id,
                                                     actor=request.principal.actor)
        return _verification_response(verification, status=http.HTTP_202_ACCEPTED)


class AuditVerificationLatest(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(operation_id="workflows_audit_verify_latest",
                   summary="Get the latest background verification", tags=["audit"],
                   responses={200: AuditVerificationOut, **READ_ERRORS},
                   examples=[ex.response("done", {**ex.VERIFICATION, "status": "done",
                                                  "started_at": ex.AT, "finished_at": ex.AT,
                                                  "report": ex.CHAIN_REPORT})])
    def get(self, request):
        """The tenant's most recent background verification (404 when there is none)."""
        verification = audit_verifications_for_tenant(request.principal.tenant.id).first()
        if verification is None:
            raise NotFound("No verification has been requested yet: POST "
                           "/workflows/audit/verify.")
        return _verification_response(verification)


class AuditVerificationDetail(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(operation_id="workflows_audit_verification_retrieve",
                   summary="Get a background verification", tags=["audit"],
                   parameters=path_parameters("verification_id"),
                   responses={200: AuditVerificationOut, **READ_ERRORS},
                   examples=[ex.response("running", {**ex.VERIFICATION, "status": "running",
                                                     "started_at": ex.AT})])
    def get(self, request, verification_id: int):
        """One of the tenant's background verifications."""
        verification = audit_verifications_for_tenant(request.principal.tenant.id).filter(
            pk=verification_id).first()
        if verification is None:
            raise NotFound("No such verification.")
        return _verification_response(verification)
