"""The tenant's append-only log: signed checkpoints (C2SP signed notes), inclusion and
consistency proofs (RFC 9162, base64 hashes), and a run's attestation (DSSE envelope of
an in-toto statement). Reads only: nothing here seals or registers anything."""

import base64

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.log import log_checkpoint, log_consistency, log_inclusion, log_origin
from audit.merkle_log import ProofRangeError
from fcore.errors import BadRequest, Conflict, NotFound
from runs import selectors

from .evidence import evidence_pack
from .schema import path_parameters
from .serializers import ERROR_RESPONSES

TAG = ["audit"]
_NOTE_EXAMPLE = ("fcore.invalid/audit/acme\n12\nq8V3y1Wb5R0yM2HcB9c3n3a9QpEw3Yq2wz8b1m4kVZk=\n"
                 "\n\u2014 fcore.invalid/audit/acme Wf3a0s…base64…==\n")
_HASH_EXAMPLE = "q8V3y1Wb5R0yM2HcB9c3n3a9QpEw3Yq2wz8b1m4kVZk="


def _int_param(request, name: str, *, required: bool = True) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        if required:
            raise BadRequest(f"{name} is required", errors={name: ["This field is required."]})
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{name} must be a non-negative integer",
                         errors={name: ["A non-negative integer is required."]})
    return int(text)


def since_param(request) -> int | None:
    """`?since=N` of the evidence endpoint (a kept checkpoint's tree size)."""
    return _int_param(request, "since", required=False)


def _b64(nodes) -> list[str]:
    return [base64.b64encode(node).decode() for node in nodes]


class AuditCheckpoint(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(
        summary="The tenant's signed log checkpoint (C2SP signed note)",
        tags=TAG,
        parameters=[OpenApiParameter("size", int, description="the tree size of an earlier "
                                     "checkpoint (default: the latest)")],
        responses={(200, "text/plain"): OpenApiTypes.STR, **ERROR_RESPONSES},
        examples=[OpenApiExample("checkpoint", value=_NOTE_EXAMPLE, media_type="text/plain",
                                 response_only=True)])
    def get(self, request):
        """The latest checkpoint of the tenant's append-only log as a C2SP signed note
        (`text/plain`): origin, tree size and base64 root hash, then an Ed25519 signature
        line. `?size=N`: the checkpoint of an earlier tree of N leaves. 404 when none."""
        size = _int_param(request, "size", required=False)
        checkpoint = log_checkpoint(request.principal.tenant.id, size)
        if checkpoint is None:
            raise NotFound("No checkpoint of that tree size." if size is not None
                           else "No checkpoint has been signed yet.")
        return HttpResponse(checkpoint.note, content_type="text/plain; charset=utf-8")


class ConsistencyProofOut(serializers.Serializer):
    origin = serializers.CharField(help_text="The log (first line of its checkpoints).")
    first = serializers.IntegerField(source="from", help_text="The smaller tree size.")
    second = serializers.IntegerField(source="to", help_text="The larger tree size.")
    proof = serializers.ListField(child=serializers.CharField(), help_text=(
        "RFC 9162 §2.1.4 consistency proof: base64 sha256 nodes; empty when from = to."))


class AuditConsistencyProof(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(
        summary="Consistency proof between two tree sizes of the log",
        tags=TAG,
        parameters=[OpenApiParameter("from", int, required=True,
                                     description="the earlier tree size, at least 1"),
                    OpenApiParameter("to", int, required=True,
                                     description="the later tree size, at most the latest")],
        responses={200: ConsistencyProofOut, **ERROR_RESPONSES},
        examples=[OpenApiExample("proof", response_only=True, value={
            "origin": "fcore.invalid/audit/acme", "from": 7, "to": 12,
            "proof": [_HASH_EXAMPLE, _HASH_EXAMPLE]})])
    def get(self, request):
        """The proof that the tree of `to` leaves extends the tree of `from` leaves
        (1 <= from <= to <= the latest size; otherwise 400)."""
        first, second = _int_param(request, "from"), _int_param(request, "to")
        tenant = request.principal.tenant
        try:
            proof = log_consistency(tenant.id, first, second)
        except ProofRangeError as exc:
            raise BadRequest(str(exc)) from None
        return Response({"origin": log_origin(tenant.slug), "from": first, "to": second,
                         "proof": _b64(proof)})


class InclusionLeafOut(serializers.Serializer):
    stream = serializers.CharField(help_text="The stream whose head this leaf is.")
    seq = serializers.IntegerField(help_text="The head's event number.")
    hash = serializers.CharField(help_text="The head event's hash (hex).")


class InclusionProofOut(serializers.Serializer):
    origin = serializers.CharField(help_text="The log (first line of its checkpoints).")
    index = serializers.IntegerField(help_text="The leaf's position, from 0.")
    size = serializers.IntegerField(help_text="The tree size the proof is for.")
    leaf = InclusionLeafOut(help_text="The leaf: leaf hash = sha256(0x00 || JCS(leaf)).")
    leaf_hash = serializers.CharField(help_text="Base64 of the leaf hash.")
    proof = serializers.ListField(child=serializers.CharField(), help_text=(
        "RFC 9162 §2.1.3 audit path, bottom up: base64 sha256 nodes."))


class AuditInclusionProof(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(
        summary="Inclusion proof of one leaf of the log",
        tags=TAG,
        parameters=[OpenApiParameter("index", int, required=True,
                                     description="the leaf's position, from 0"),
                    OpenApiParameter("size", int, required=True,
                                     description="the tree size, index < size <= latest")],
        responses={200: InclusionProofOut, **ERROR_RESPONSES},
        examples=[OpenApiExample("proof", response_only=True, value={
            "origin": "fcore.invalid/audit/acme", "index": 3, "size": 12,
            "leaf": {"stream": "run/4f1c…", "seq": 14, "hash": "9e1b…"},
            "leaf_hash": _HASH_EXAMPLE, "proof": [_HASH_EXAMPLE]})])
    def get(self, request):
        """The leaf at `index` and its audit path in the tree of `size` leaves
        (0 <= index < size <= the latest size; otherwise 400)."""
        index, size = _int_param(request, "index"), _int_param(request, "size")
        tenant = request.principal.tenant
        try:
            leaf, proof = log_inclusion(tenant.id, index, size)
        except ProofRangeError as exc:
            raise BadRequest(str(exc)) from None
        return Response({"origin": log_origin(tenant.slug), "index": index, "size": size,
                         "leaf": {"stream": leaf.stream, "seq": leaf.seq, "hash": leaf.hash},
                         "leaf_hash": base64.b64encode(bytes.fromhex(leaf.leaf_hash)).decode(),
                         "proof": _b64(proof)})


class EnvelopeSignatureOut(serializers.Serializer):
    keyid = serializers.CharField(help_text="Id of the signing key (GET /workflows/audit/keys).")
    sig = serializers.CharField(help_text="Base64 Ed25519 signature of PAE(payloadType, "
                                          "payload).")


class EnvelopeOut(serializers.Serializer):
    payload = serializers.CharField(help_text="Base64 of the JCS of the in-toto Statement v1.")
    payloadType = serializers.CharField(help_text="application/vnd.in-toto+json")  # noqa: N815
    signatures = EnvelopeSignatureOut(many=True, help_text="DSSE signatures (Ed25519).")


class RunAttestation(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(
        summary="The run's attestation (DSSE envelope of an in-toto statement)",
        tags=["evidence"], parameters=path_parameters("run_id"),
        responses={200: EnvelopeOut, **ERROR_RESPONSES},
        examples=[OpenApiExample("envelope", response_only=True, value={
            "payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEiLC4uLn0=",
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"keyid": "3f2a9c0d1e4b5a67", "sig": "MEUCIQ…=="}]})])
    def get(self, request, run_id):
        """A DSSE envelope of the in-toto Statement v1 of a sealed run: subject
        `run/<run_id>` with digest `{"sha256": workflow_hash}`, predicate FC's evidence
        summary (receipts, decisions, votes, the covering checkpoint, field digests).
        409 while the run is not sealed; the same envelope is the evidence pack's
        `attestation`."""
        run = selectors.run_get(request.principal.tenant, run_id)
        if not run.workflow_hash:
            raise Conflict("The run is not sealed yet: its attestation names its "
                           "workflow_hash.")
        envelope = evidence_pack(run)["attestation"]
        if envelope is None:
            raise Conflict("No signing key is configured.")
        return Response(envelope)
