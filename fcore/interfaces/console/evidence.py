"""The console's evidence download: the run's evidence pack as a JSON attachment.

The same document as `GET /workflows/runs/{id}/evidence`
(`fcore.interfaces.api.evidence.evidence_pack`,
rendered by DRF's JSON renderer), for a signed-in person holding `audit:read`.
"""

from django.http import HttpResponse
from django.views.decorators.http import require_safe
from rest_framework.renderers import JSONRenderer

from fcore.errors import NotFound
from fcore.interfaces.api.evidence import evidence_pack
from runs import selectors

from .access import console_view, not_found


@require_safe
@console_view(scope="audit:read")
def run_evidence(request, principal, run_id: str):
    """Download the run's evidence pack (`evidence-<run_id>.json`)."""
    try:
        run = selectors.run_get(principal.tenant, run_id)
    except NotFound:
        return not_found(request, principal, "run")
    body = JSONRenderer().render(evidence_pack(run))
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="evidence-{run.run_id}.json"'
    return response
