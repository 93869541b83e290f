"""The shared parts of the OpenAPI schema (drf-spectacular): the `omega_` bearer token, the
error bodies exactly as `fcore.errors.exception_handler` writes them, `error_responses()`
for an endpoint to declare its errors in one line, and the hook that keeps the `/api/fc`
alias out of the schema (it is still served).

An endpoint declares its errors with the statuses it can answer:

    @extend_schema(summary="…", tags=["runs"], request=…, responses={
        200: RunOut, **error_responses(400, 401, 403, 404, 409, 429)})

The tags are declared, with their descriptions, in `SPECTACULAR_SETTINGS["TAGS"]`.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_serializer,
)
from rest_framework import serializers

ALIAS_PREFIX = "/api/fc/"


class OmegaTokenScheme(OpenApiAuthenticationExtension):
    target_class = "fcore.interfaces.api.auth.TokenAuthentication"
    name = "omegaToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "omega_<b64url(JSON claims)>.<b64url(HMAC-SHA256)>",
            "description": "A token minted by the client from its secret; see docs/api.md.",
        }


def exclude_alias(endpoints, **kwargs):
    """Preprocessing hook: the `/api/fc/…` alias answers like `/workflows/…` but is left
    out of the schema, so each operation is described once."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(ALIAS_PREFIX)]


# --- the error bodies --------------------------------------------------------------------

@extend_schema_serializer(component_name="Error")
class ErrorOut(serializers.Serializer):
    """The error shape of every API answer that is not a success (DESIGN §8)."""

    code = serializers.CharField(help_text="A stable machine-readable code "
                                           "(`fcore.errors.ErrorCode`), e.g. `not_found`; "
                                           "branch on it, not on `detail`.")
    detail = serializers.CharField(help_text="What went wrong, for a person to read.")


@extend_schema_serializer(component_name="ValidationError")
class ValidationErrorOut(ErrorOut):
    """A 400: `invalid` with the fields in `errors`, or another 400 code (`bad_cursor`,
    `malformed_request`, `unknown_workflow`, `invalid_input`, `expression_error`, …)."""

    errors = serializers.DictField(
        child=serializers.JSONField(), required=False,
        help_text="Field name → list of messages (an object for a nested field); present "
                  "when `code` is `invalid` and with some other 400 codes.")


@extend_schema_serializer(component_name="ConflictError")
class ConflictErrorOut(ErrorOut):
    """A 409: the object's state does not allow the request. `invalid_transition` adds
    `current` and `allowed`; the other codes add the context they name."""

    current = serializers.CharField(required=False,
                                    help_text="The object's status now (run, step or gate).")
    allowed = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="With `invalid_transition`: the statuses the object may be set to from "
                  "`current` (empty: none).")
    gate_id = serializers.IntegerField(required=False,
                                       help_text="With `gate_open`: the gate to decide first.")
    run_id = serializers.CharField(required=False, help_text="With `idempotency_conflict`: "
                                                             "the run that holds the key.")
    reviewed_by = serializers.CharField(required=False, help_text="With `already_reviewed`: "
                                                                  "who reviewed the override.")


def _example(name: str, value: dict) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True)


# status → (component, description, examples)
_ERRORS = {
    400: (ValidationErrorOut,
          "Bad input: `invalid` (fields listed in `errors`), `malformed_request` (not JSON), "
          "`bad_cursor`, `unknown_workflow`, `invalid_input` and the like.",
          [_example("invalid", {"code": "invalid", "detail": "The request has invalid fields.",
                                "errors": {"workflow": ["This field is required."]}}),
           _example("unknown_workflow", {
               "code": "unknown_workflow", "detail": "Unknown workflow 'payroll'.",
               "errors": {"workflow": ["unknown workflow"]}})]),
    401: (ErrorOut,
          "`not_authenticated` (no token) or `authentication_failed` (bad signature, unknown "
          "key, expired); the answer carries `WWW-Authenticate: Bearer`.",
          [_example("authentication_failed", {"code": "authentication_failed",
                                              "detail": "Token expired."})]),
    403: (ErrorOut,
          "`forbidden` (the token lacks the scope), `four_eyes` (the run's creator may not "
          "approve it), `not_an_approver`, `break_glass_disabled`.",
          [_example("forbidden", {"code": "forbidden",
                                  "detail": "This needs the 'runs:write' scope."}),
           _example("four_eyes", {"code": "four_eyes",
                                  "detail": "The actor who created the run or requested the "
                                            "gate cannot vote on it."})]),
    404: (ErrorOut,
          "`not_found`: no such object, or another tenant's (existence is not leaked).",
          [_example("not_found", {"code": "not_found", "detail": "No such run."})]),
    409: (ConflictErrorOut,
          "The state does not allow it: `invalid_transition` (with `current` and `allowed`), "
          "`gate_open`, `already_voted`, `stale_attempt`, `idempotency_conflict`, "
          "`not_external`, `not_overridden`, `already_reviewed`.",
          [_example("invalid_transition", {
              "code": "invalid_transition",
              "detail": "Run 0b6c1f7e-8d3a-4e55-9d0e-2f1c3a4b5c6d is completed; it cannot "
                        "become paused", "current": "completed", "allowed": []}),
           _example("gate_open", {"code": "gate_open",
                                  "detail": "Run waits at gate 7; decide the gate to resume.",
                                  "gate_id": 7, "current": "paused"})]),
    429: (ErrorOut,
          "`throttled`: too many requests from this actor; `Retry-After` says when to retry.",
          [_example("throttled", {"code": "throttled", "detail": "Request was throttled. "
                                                                 "Expected available in 3 "
                                                                 "seconds."})]),
}

ERROR_STATUSES = tuple(_ERRORS)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers of an endpoint for `extend_schema(responses=...)`, each with its
    real body (`Error`, `ValidationError` with `errors`, `ConflictError` with `current`
    and `allowed`), a description of its codes and examples."""
    unknown = set(statuses) - set(_ERRORS)
    if unknown:
        raise ValueError(f"no error shape for status {sorted(unknown)}; "
                         f"known: {list(ERROR_STATUSES)}")
    return {status: OpenApiResponse(response=_ERRORS[status][0],
                                    description=_ERRORS[status][1],
                                    examples=_ERRORS[status][2])
            for status in statuses}


# --- path parameters ---------------------------------------------------------------------

_PATH_PARAMETERS = {
    "run_id": (str, "The run's id (UUID), from `run_id` of the run."),
    "gate_id": (int, "The gate's id, from `gate_id` of the gate."),
    "step_id": (str, "The step's id in the workflow definition, e.g. `step_1`."),
    "verification_id": (int, "The background verification's id (`verification_id`)."),
}


def path_parameters(*names: str) -> list[OpenApiParameter]:
    """The described path parameters `names` for `extend_schema(parameters=...)`."""
    return [OpenApiParameter(name, _PATH_PARAMETERS[name][0], OpenApiParameter.PATH,
                             description=_PATH_PARAMETERS[name][1]) for name in names]
