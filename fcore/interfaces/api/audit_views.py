"""Audit endpoints of the evidence work: the public keys that sign checkpoints."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import SigningKey

from .serializers import ERROR_RESPONSES


class SigningKeyOut(serializers.ModelSerializer):
    algorithm = serializers.SerializerMethodField()

    class Meta:
        model = SigningKey
        fields = ["key_id", "algorithm", "public_key", "created_at", "retired_at"]

    def get_algorithm(self, obj) -> str:
        return "Ed25519"


class AuditKeys(APIView):
    required_scopes = {"GET": "audit:read"}

    @extend_schema(responses={200: SigningKeyOut(many=True), **ERROR_RESPONSES})
    def get(self, request):
        """The Ed25519 public keys that sign checkpoints (base64 of the raw 32 bytes), with
        their ids; a retired key still verifies the checkpoints it signed. Keys are
        registered at start-up, by `register_signing_key` and before a checkpoint is
        sealed; this read registers nothing."""
        keys = SigningKey.objects.order_by("created_at", "id")
        return Response(SigningKeyOut(keys, many=True).data)
