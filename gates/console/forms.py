"""Console forms. They only check the shape of what a person sent; the rules (four-eyes,
who may vote, whether the gate is still open) live in the services."""

import json

from django import forms

from gates.models import Vote

MAX_COMMENT = 2000


class GateDecisionForm(forms.Form):
    """One vote on a gate: approve or reject, with a comment (required to reject) and, for
    a gate that asks for structured input, a JSON object."""

    decision = forms.ChoiceField(choices=Vote.choices)
    comment = forms.CharField(required=False, max_length=MAX_COMMENT, strip=True,
                              widget=forms.Textarea(attrs={"rows": 2}))
    input = forms.CharField(required=False, max_length=20000,
                            widget=forms.Textarea(attrs={"rows": 3}))

    def clean_input(self):
        raw = self.cleaned_data.get("input", "").strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Input is not valid JSON: {exc.msg}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Input must be a JSON object.")
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("decision") == Vote.REJECT and not cleaned.get("comment"):
            self.add_error("comment", "A comment is required to reject a gate.")
        return cleaned

    def error_text(self) -> str:
        """All errors as one sentence-like string, for a flash message."""
        return " ".join(str(e) for errors in self.errors.values() for e in errors)


class GateOverrideForm(forms.Form):
    """Break-glass: a justification is required (the service checks it again)."""

    justification = forms.CharField(max_length=4000, strip=True,
                                    widget=forms.Textarea(attrs={"rows": 2}),
                                    error_messages={"required": "A justification is required "
                                                                "to override a gate."})

    def error_text(self) -> str:
        return " ".join(str(e) for errors in self.errors.values() for e in errors)
