"""Request ids and JSON logs.

Every request gets an id (a sane incoming `X-Request-ID`, else a new one), echoed in the
response header and attached to every log record made while the request is handled, so one
grep finds everything a request did. Logs are JSON lines (python-json-logger).
"""

import contextvars
import logging
import re
import uuid

REQUEST_ID = contextvars.ContextVar("fc_request_id", default="-")
_SANE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Sets the request id for the duration of the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SANE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = REQUEST_ID.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            REQUEST_ID.reset(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True
