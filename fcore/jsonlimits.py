"""The one limit on JSON the server parses or stores, for every entry kind.

`FCORE_JSON_MAX_DEPTH` bounds how deeply containers nest, and strings must be encodable
as UTF-8 (no lone surrogate, which JSON's `"\\ud800"` escape produces); what is stored
and hashed must also be RFC 8785 JSON (safe integers, finite numbers, no NUL).
Python's `json` recurses while it parses and `rfc8785` while it hashes, so a body nested a
few thousand levels was a RecursionError (500), and one nested 600–980 levels was stored
and then broke every reader of the audit trail. The checks:

- the API: `JSONParser`, DRF's default parser (settings), refuses such a body with 400;
- forms: `json_parse` (the console's decide and review-link forms), `CheckedJSONField`
  (admin's JSON fields);
- services that store JSON call `json_problem` (`audit.hashing.jcs_problem` under the
  configured depth), which is the guarantee for every other caller (commands, bundles).
"""

import json

from django import forms
from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from audit.hashing import jcs_problem, json_shape_problem


def json_max_depth() -> int:
    """The configured nesting limit (`FCORE_JSON_MAX_DEPTH`)."""
    return settings.FCORE_JSON_MAX_DEPTH


def json_problem(value, path: str = "$") -> str | None:
    """Why `value` cannot be stored and hashed (None when it can), under the depth limit."""
    return jcs_problem(value, path, max_depth=json_max_depth())


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def json_parse(text: str | bytes):
    """Parse JSON text; ValueError naming the reason when it is malformed, holds NaN or
    Infinity, nests deeper than the limit or holds a string UTF-8 cannot encode."""
    limit = json_max_depth()
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {limit} levels") from None
    problem = json_shape_problem(value, max_depth=limit)
    if problem:
        raise ValueError(problem)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the checks of `json_parse`: 400 `malformed_request`
    instead of a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            value = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {json_max_depth()} levels.") from None
        problem = json_shape_problem(value, max_depth=json_max_depth())
        if problem:
            raise ParseError(f"The JSON body is refused: {problem}.")
        return value


class CheckedJSONField(forms.JSONField):
    """Django's form JSONField with the checks of `json_parse` (a form error, not a 500)."""

    def to_python(self, value):
        try:
            value = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(
                f"Enter valid JSON nested at most {json_max_depth()} levels.") from None
        problem = json_shape_problem(value, max_depth=json_max_depth())
        if problem:
            raise forms.ValidationError(f"Enter valid JSON: {problem}.")
        return value

    def bound_data(self, data, initial):
        """What a refused form shows again: the text as sent when it is refused here (a
        lone surrogate cannot even be written into the page)."""
        try:
            value = super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)
        if self.disabled or isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if json_shape_problem(value, max_depth=json_max_depth()):
            return forms.fields.InvalidJSONInput(data)
        return value
