"""Who is asking, for which tenant, with which rights — decided in one place.

`request_principal(request)` gives a `Principal` for a token client (set by
`fcore.auth.TokenAuthentication`) or a signed-in person (their tenant membership and the
groups they hold there). Selectors take `principal.tenant`; nothing else filters by tenant.
"""

from dataclasses import dataclass

from .actors import client_actor, user_actor
from .models import Membership, Tenant

GROUP_SCOPES = {
    "operators": {"runs:read", "runs:write", "gates:request", "audit:read"},
    "approvers": {"runs:read", "gates:resolve", "audit:read"},
    "policy-admins": {"runs:read", "audit:read"},
    "auditors": {"runs:read", "audit:read"},
}


@dataclass(frozen=True)
class Principal:
    tenant: Tenant
    actor: str
    scopes: frozenset
    groups: frozenset | None  # None for a machine client
    is_machine: bool

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def membership_for(user) -> Membership | None:
    """The person's tenant membership (the first one when they have several)."""
    if not user or not user.is_authenticated:
        return None
    return (Membership.objects.filter(user=user).select_related("tenant")
            .prefetch_related("groups").order_by("id").first())


def principal_for_user(user) -> Principal | None:
    membership = membership_for(user)
    if membership is None:
        return None
    groups = frozenset(g.name for g in membership.groups.all())
    scopes = set()
    for group in groups:
        scopes |= GROUP_SCOPES.get(group, set())
    return Principal(tenant=membership.tenant, actor=user_actor(user), scopes=frozenset(scopes),
                     groups=groups, is_machine=False)


def principal_for_client(client, sub: str, scopes: set[str]) -> Principal:
    return Principal(tenant=client.tenant, actor=client_actor(sub), scopes=frozenset(scopes),
                     groups=None, is_machine=True)


def request_principal(request) -> Principal | None:
    principal = getattr(request, "_fc_principal", None)
    if principal is None:
        principal = principal_for_user(getattr(request, "user", None))
        request._fc_principal = principal
    return principal
