"""Cursor pagination whose cursors are checked before they reach SQL.

A cursor is base64 of `o=<offset>&r=<reverse>&p=<position>`, and a client can forge one.
DRF answers a cursor it cannot decode with 404 and passes the position to the queryset
filter as it is, so a position that is not a value of the ordering field (a date that is
not a date, a number beyond 64 bits) was a 500. Here every such cursor is a 400
`bad_cursor`: it must decode, its offset must be within `offset_cutoff` and its
position must be a value of the first ordering field.
"""

import binascii
from base64 import b64decode
from urllib.parse import parse_qs

from django.core.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination

from fcore.errors import BadRequest, ErrorCode

INT64_MAX = 2**63 - 1  # the widest integer column, on SQLite and PostgreSQL alike


def _bad_cursor(why: str) -> BadRequest:
    return BadRequest(f"The cursor is not valid: {why}. Use a link this API returned.",
                      code=ErrorCode.BAD_CURSOR)


class CheckedCursorPagination(CursorPagination):
    """CursorPagination answering a forged or corrupted cursor with 400 `bad_cursor`."""

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model  # the position is checked against its ordering field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            tokens = parse_qs(b64decode(encoded.encode("ascii")).decode("ascii"),
                              keep_blank_values=True)
            offset = int(tokens.get("o", ["0"])[0])
            reverse = int(tokens.get("r", ["0"])[0])
        except (TypeError, ValueError, binascii.Error):
            raise _bad_cursor("it does not decode") from None
        if not 0 <= offset <= self.offset_cutoff:
            raise _bad_cursor(f"its offset is not from 0 to {self.offset_cutoff}")
        if reverse not in (0, 1):
            raise _bad_cursor("its direction is not 0 or 1")
        position = tokens.get("p", [None])[0]
        if position is not None:
            self._check_position(position)
        return Cursor(offset=offset, reverse=bool(reverse), position=position)

    def _check_position(self, position: str) -> None:
        name = self.ordering[0].lstrip("-")
        field = self.model._meta.get_field(name)
        try:
            value = field.to_python(position)
        except ValidationError:
            raise _bad_cursor(f"its position is not a {name}") from None
        if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise _bad_cursor(f"its position is not a {name}")

    def get_paginated_response_schema(self, schema):
        """DRF's page schema with each part described (the OpenAPI schema)."""
        page = super().get_paginated_response_schema(schema)
        parts = page["properties"]
        parts["next"]["description"] = "Link to the next page; null on the last page."
        parts["previous"]["description"] = "Link to the previous page; null on the first."
        if isinstance(parts["results"], dict):  # drf-spectacular passes a sentinel too
            parts["results"] = {**parts["results"], "description": "This page's items."}
        return page
