"""Switching the tenant a person works in, for people who are members of several.

The choice is kept in the session (`fcore.tenancy.tenant_choose`) and read wherever the
request's `Principal` is built, so the console, the API under a session and the policy
admin all work in the same tenant. Only a tenant the person is a member of can be chosen.
"""

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from fcore.tenancy import tenant_choose

from .access import console_view


@require_POST
@console_view
def tenant_switch(request, principal):
    """Work in another of the person's tenants; back to the queue (a page of the former
    tenant, a run say, is not found in the new one)."""
    slug = request.POST.get("tenant", "")
    chosen = tenant_choose(request, slug)
    if chosen is None:
        messages.error(request, "You are not a member of that tenant.")
    elif chosen.tenant.slug != principal.tenant.slug:
        messages.success(request, f"Now working in {chosen.tenant.name or chosen.tenant.slug}.")
    return redirect("console:queue")
