"""GET filters of the console's lists: bookmarkable query parameters, checked by forms.

An invalid value is dropped, not an error: a stale bookmark still opens the page. Choices
come from the person's tenant (workflow names, policy tiers) and groups.
"""

from datetime import UTC, datetime

from django import forms
from django.http import QueryDict

from audit.messages import TITLES
from fcore.tenancy import Principal
from gates.models import Policy
from runs.models import RunStatus, WorkflowDefinition

PAGE_SIZES = [(25, "25"), (50, "50"), (100, "100")]
AGE_CHOICES = [("", "Any age"), ("1h", "Older than 1 hour"), ("4h", "Older than 4 hours"),
               ("1d", "Older than 1 day"), ("7d", "Older than 7 days")]
SORT_CHOICES = [("deadline", "Deadline (soonest first)"), ("age", "Age (oldest first)"),
                ("newest", "Newest first")]


def workflow_choices(tenant) -> list:
    names = (WorkflowDefinition.objects.for_tenant(tenant).order_by("name")
             .values_list("name", flat=True).distinct())
    return [("", "Any workflow")] + [(n, n) for n in names]


def _per_field():
    return forms.TypedChoiceField(required=False, coerce=int, empty_value=25,
                                  choices=PAGE_SIZES, label="Per page")


class QueueFilterForm(forms.Form):
    workflow = forms.ChoiceField(required=False, label="Workflow")
    tier = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Tier")
    group = forms.ChoiceField(required=False, label="Approver group")
    age = forms.ChoiceField(required=False, choices=AGE_CHOICES, label="Age")
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES, label="Sort by")
    per = _per_field()

    def __init__(self, data, *, principal: Principal):
        super().__init__(data)
        tenant = principal.tenant
        self.fields["workflow"].choices = workflow_choices(tenant)
        tiers = (Policy.objects.for_tenant(tenant).order_by("tier")
                 .values_list("tier", flat=True).distinct())
        self.fields["tier"].choices = [("", "Any tier")] + [(t, f"Tier {t}") for t in tiers]
        self.fields["group"].choices = [("", "Any of my groups")] + [
            (g, g) for g in sorted(principal.groups or ())]


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, label="Status",
                               choices=[("", "Any status")] + list(RunStatus.choices))
    workflow = forms.ChoiceField(required=False, label="Workflow")
    parent = forms.UUIDField(required=False, label="Parent run",
                             help_text="Only the child runs this run's workflow steps started")
    per = _per_field()

    def __init__(self, data, *, principal: Principal):
        super().__init__(data)
        self.fields["workflow"].choices = workflow_choices(principal.tenant)


class AuditFilterForm(forms.Form):
    run = forms.UUIDField(required=False, label="Run id")
    stream = forms.CharField(required=False, max_length=200, label="Stream", strip=True)
    code = forms.ChoiceField(required=False, label="Event code",
                             choices=[("", "Any code")] + [(c, c) for c in sorted(TITLES)])
    actor = forms.CharField(required=False, max_length=200, label="Actor", strip=True)
    start = forms.DateTimeField(required=False, label="From (UTC)",
                                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S",
                                               "%Y-%m-%d %H:%M", "%Y-%m-%d"],
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    end = forms.DateTimeField(required=False, label="To (UTC)",
                              input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S",
                                             "%Y-%m-%d %H:%M", "%Y-%m-%d"],
                              widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    per = _per_field()

    def clean(self):
        cleaned = super().clean()
        for key in ("start", "end"):
            value = cleaned.get(key)
            if value is not None and value.tzinfo is None:
                cleaned[key] = value.replace(tzinfo=UTC)
        return cleaned


def read_filters(form: forms.Form) -> dict:
    """The valid filters only (invalid ones are dropped), with defaults filled in."""
    form.is_valid()
    params = dict(form.cleaned_data)
    for name, field in form.fields.items():
        if name not in params:
            params[name] = getattr(field, "empty_value", None) if isinstance(
                field, forms.TypedChoiceField) else None
    return params


def query_string(data: QueryDict, *, drop: tuple = ("page",)) -> str:
    """The request's filters for links and polling (`page` dropped unless kept)."""
    kept = data.copy()
    for key in drop:
        kept.pop(key, None)
    for key in [k for k, v in kept.items() if v == ""]:
        kept.pop(key)
    return kept.urlencode()


def utc_text(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value else ""
