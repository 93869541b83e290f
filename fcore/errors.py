"""One error shape for the whole API: `{"code": "...", "detail": "...", ...context}`.

Services raise `FCError` subclasses; `exception_handler` turns them, DRF's own exceptions
and Django's into that shape. Nothing a client sends may end in a 500.
"""

import logging
from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """Every `code` of the API's error shape (DESIGN §8); members are the strings."""

    ALREADY_REVIEWED = "already_reviewed"
    ALREADY_VOTED = "already_voted"
    AUTHENTICATION_FAILED = "authentication_failed"
    BAD_CURSOR = "bad_cursor"
    BAD_REQUEST = "bad_request"
    BREAK_GLASS_DISABLED = "break_glass_disabled"
    CONFLICT = "conflict"
    CSRF_FAILED = "csrf_failed"
    ERROR = "error"
    EXPRESSION_ERROR = "expression_error"
    FORBIDDEN = "forbidden"
    FOUR_EYES = "four_eyes"
    GATE_OPEN = "gate_open"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INPUT_SCHEMA_UNUSABLE = "input_schema_unusable"
    INVALID = "invalid"
    INVALID_INPUT = "invalid_input"
    INVALID_TRANSITION = "invalid_transition"
    LEASE_LOST = "lease_lost"
    LINK_EXPIRED = "link_expired"
    LINK_INVALID = "link_invalid"
    LINK_USED = "link_used"
    LINK_WRONG_USER = "link_wrong_user"
    MALFORMED_REQUEST = "malformed_request"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    NOT_AN_APPROVER = "not_an_approver"
    NOT_AUTHENTICATED = "not_authenticated"
    NOT_EXTERNAL = "not_external"
    NOT_FOUND = "not_found"
    NOT_OVERRIDDEN = "not_overridden"
    SERVER_ERROR = "server_error"
    STALE_ATTEMPT = "stale_attempt"
    THROTTLED = "throttled"
    UNKNOWN_WORKFLOW = "unknown_workflow"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"


class FCError(Exception):
    """A refusal with an HTTP status, a stable code and optional context."""

    status = 400
    code = ErrorCode.BAD_REQUEST

    def __init__(self, detail: str, *, code: str | None = None, **context):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.context = context

    def as_dict(self) -> dict:
        return {"code": str(self.code), "detail": self.detail, **self.context}


class BadRequest(FCError):
    status, code = 400, ErrorCode.BAD_REQUEST


class NotFound(FCError):
    status, code = 404, ErrorCode.NOT_FOUND


class Forbidden(FCError):
    status, code = 403, ErrorCode.FORBIDDEN


class FourEyes(Forbidden):
    code = ErrorCode.FOUR_EYES


class Conflict(FCError):
    status, code = 409, ErrorCode.CONFLICT


class InvalidTransition(Conflict):
    """A state change the state machine does not allow from the current state."""

    code = ErrorCode.INVALID_TRANSITION

    def __init__(self, *, obj: str, current: str, allowed: list[str], target: str = ""):
        detail = f"{obj} is {current}"
        detail += f"; it cannot become {target}" if target else "; that change is not allowed"
        super().__init__(detail, current=current, allowed=sorted(allowed))


_DRF_CODES = {
    drf.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    drf.AuthenticationFailed: ErrorCode.AUTHENTICATION_FAILED,
    drf.PermissionDenied: ErrorCode.FORBIDDEN,
    drf.NotFound: ErrorCode.NOT_FOUND,
    drf.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    drf.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    drf.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    drf.Throttled: ErrorCode.THROTTLED,
    drf.ParseError: ErrorCode.MALFORMED_REQUEST,
    drf.ValidationError: ErrorCode.INVALID,
}


def _drf_code(exc) -> str:
    for cls, code in _DRF_CODES.items():
        if isinstance(exc, cls):
            return code
    return ErrorCode.ERROR


def exception_handler(exc, context):
    """DRF exception handler producing the FC error shape."""
    if isinstance(exc, FCError):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf.ValidationError):
        body = {"code": ErrorCode.INVALID, "detail": "The request has invalid fields.",
                "errors": exc.detail}
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = {"code": _drf_code(exc), "detail": str(detail)}
        if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="federation-core"'
    response.data = body
    return response


API_PREFIXES = ("/workflows/", "/api/")


def json_error_view(status: int, code: ErrorCode, detail: str):
    """Error pages: the JSON error shape under the API, a plain page elsewhere."""

    def view(request, exception=None):
        if request.path.startswith(API_PREFIXES):
            return JsonResponse({"code": str(code), "detail": detail}, status=status)
        from django.shortcuts import render

        return render(request, "error.html", {"status": status, "detail": detail},
                      status=status)

    return view
