"""Console forms. They only check the shape of what a person sent; the rules (four-eyes,
who may vote, whether the gate is still open) live in the services."""

from django import forms

from fcore.jsonlimits import json_parse
from gates.models import Vote
from gates.services import REVIEW_NOTE_MAX

from .inputs import posted_input

MAX_COMMENT = 2000


class ConsoleForm(forms.Form):
    """A console form: its refusals are shown as one flash message (`error_text`)."""

    def error_text(self) -> str:
        """All errors as one sentence-like string, for a flash message."""
        return " ".join(str(e) for errors in self.errors.values() for e in errors)


class GateDecisionForm(ConsoleForm):
    """One vote on a gate: approve or reject, with a comment (required to reject) and, for
    a gate that asks for structured input, a JSON object."""

    decision = forms.ChoiceField(choices=Vote.choices)
    comment = forms.CharField(required=False, max_length=MAX_COMMENT, strip=True,
                              widget=forms.Textarea(attrs={"rows": 2}))
    input = forms.CharField(required=False, max_length=20000,
                            widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, schema=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.schema = schema

    def clean_input(self):
        raw = self.cleaned_data.get("input", "").strip()
        if not raw:
            return None
        try:
            value = json_parse(raw)
        except ValueError as exc:
            detail = getattr(exc, "msg", None) or str(exc)
            raise forms.ValidationError(f"Input is not valid JSON: {detail}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Input must be a JSON object.")
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("decision") == Vote.REJECT and not cleaned.get("comment"):
            self.add_error("comment", "A comment is required to reject a gate.")
        if cleaned.get("input") is None and self.schema is not None:
            cleaned["input"] = posted_input(self.data, self.schema)
        return cleaned


class GateOverrideForm(ConsoleForm):
    """Break-glass: a justification is required (the service checks it again)."""

    justification = forms.CharField(max_length=4000, strip=True,
                                    widget=forms.Textarea(attrs={"rows": 2}),
                                    error_messages={"required": "A justification is required "
                                                                "to override a gate."})


class IdListField(forms.Field):
    """Several `name=<int>` values (checkboxes) as a list of distinct positive ints."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        ids = []
        for raw in value or []:
            try:
                number = int(raw)
            except (TypeError, ValueError):
                raise forms.ValidationError("Gate ids are numbers.") from None
            if number > 0 and number not in ids:
                ids.append(number)
        return ids


class BulkDecisionForm(ConsoleForm):
    """One decision for several gates: approve or reject, one comment (required to
    reject)."""

    MAX_GATES = 100

    gates = IdListField(error_messages={"required": "Select at least one gate."})
    decision = forms.ChoiceField(choices=Vote.choices)
    comment = forms.CharField(required=False, max_length=MAX_COMMENT, strip=True)

    def clean_gates(self):
        ids = self.cleaned_data["gates"]
        if not ids:
            raise forms.ValidationError("Select at least one gate.")
        if len(ids) > self.MAX_GATES:
            raise forms.ValidationError(f"At most {self.MAX_GATES} gates at once.")
        return ids

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("decision") == Vote.REJECT and not cleaned.get("comment"):
            self.add_error("comment", "A comment is required to reject gates.")
        return cleaned


class CancelRunForm(ConsoleForm):
    """Cancelling a run asks why."""

    reason = forms.CharField(max_length=500, strip=True,
                             error_messages={"required": "A reason is required to cancel "
                                                         "a run."})


class OverrideReviewForm(ConsoleForm):
    """Marking a break-glass override reviewed asks for a note."""

    note = forms.CharField(max_length=REVIEW_NOTE_MAX, strip=True,
                           error_messages={"required": "A note is required to mark an "
                                                       "override reviewed."})
