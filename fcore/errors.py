"""One error shape for the whole API: `{"code": "...", "detail": "...", ...context}`.

Services raise `FCError` subclasses; `exception_handler` turns them, DRF's own exceptions
and Django's into that shape. Nothing a client sends may end in a 500.
"""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


class FCError(Exception):
    """A refusal with an HTTP status, a stable code and optional context."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, **context):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.context = context

    def as_dict(self) -> dict:
        return {"code": self.code, "detail": self.detail, **self.context}


class BadRequest(FCError):
    status, code = 400, "bad_request"


class NotFound(FCError):
    status, code = 404, "not_found"


class Forbidden(FCError):
    status, code = 403, "forbidden"


class FourEyes(Forbidden):
    code = "four_eyes"


class Conflict(FCError):
    status, code = 409, "conflict"


class InvalidTransition(Conflict):
    """A state change the state machine does not allow from the current state."""

    code = "invalid_transition"

    def __init__(self, *, obj: str, current: str, allowed: list[str], target: str = ""):
        detail = f"{obj} is {current}"
        detail += f"; it cannot become {target}" if target else "; that change is not allowed"
        super().__init__(detail, current=current, allowed=sorted(allowed))


_DRF_CODES = {
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "forbidden",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "throttled",
    drf.ParseError: "malformed_request",
    drf.ValidationError: "invalid",
}


def _drf_code(exc) -> str:
    for cls, code in _DRF_CODES.items():
        if isinstance(exc, cls):
            return code
    return "error"


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
        body = {"code": "invalid", "detail": "The request has invalid fields.",
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


def json_error_view(status: int, code: str, detail: str):
    """Error pages: the JSON error shape under the API, a plain page elsewhere."""

    def view(request, exception=None):
        if request.path.startswith(API_PREFIXES):
            return JsonResponse({"code": code, "detail": detail}, status=status)
        from django.shortcuts import render

        return render(request, "error.html", {"status": status, "detail": detail},
                      status=status)

    return view
