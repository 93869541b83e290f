"""Who is asking, for which tenant, with which rights — decided in one place.

`request_principal(request)` gives a `Principal` for a token client (set by
`fcore.interfaces.api.auth.TokenAuthentication`) or a signed-in person (their tenant
membership and the groups they hold there). Selectors take `principal.tenant`; nothing else filters
by tenant.

A person may be a member of several tenants: they work in one at a time, the one chosen
for their session (`tenant_choose`, the console's tenant switch), else the first they
joined. What each action needs is named here once and read by the API and the console
alike (`RUN_STATUS_SCOPE`).
"""

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS

from .actors import client_actor, user_actor
from .models import Membership, Tenant

GROUP_SCOPES = {
    "operators": {"runs:read", "runs:write", "gates:request", "audit:read"},
    "approvers": {"runs:read", "gates:resolve", "audit:read"},
    "policy-admins": {"runs:read", "audit:read"},
    "auditors": {"runs:read", "audit:read"},
}


# Pausing, resuming, cancelling or failing a run (API `PATCH …/status`, console "Cancel").
RUN_STATUS_SCOPE = "runs:write"
SESSION_TENANT_KEY = "fc_tenant"


_slugs: dict[int, str] = {}


def tenant_known(tenant_id: int) -> Tenant:
    """The tenant with only id and slug loaded, the slug kept per process (a slug never
    changes once the tenant exists: tokens and stream names carry it); any other field is
    read from the database when first used, so it is never stale."""
    slug = _slugs.get(tenant_id)
    if slug is None:
        if len(_slugs) > 10_000:
            _slugs.clear()
        slug = _slugs[tenant_id] = Tenant.objects.values_list("slug", flat=True).get(
            pk=tenant_id)
    return Tenant.from_db(DEFAULT_DB_ALIAS, ["id", "slug"], [tenant_id, slug])


def tenants_known_clear() -> None:
    """Forget the kept slugs (tests: ids are reused after a rollback)."""
    _slugs.clear()


@dataclass(frozen=True)
class Principal:
    tenant: Tenant
    actor: str
    scopes: frozenset
    groups: frozenset | None  # None for a machine client
    is_machine: bool
    # a person's tenants as (slug, name), in the order they joined; () for a machine client
    tenants: tuple = ()
    kid: str = ""  # a machine client's key id; "" for a person

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def memberships_of(user) -> list[Membership]:
    """A person's tenant memberships, oldest first, with tenant and groups (two queries)."""
    if not user or not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user=user).select_related("tenant")
                .prefetch_related("groups").order_by("id"))


def tenants_of(user, *, group: str | None = None):
    """The tenants `user` is a member of (holding `group` there, when given), as a queryset;
    Django admin shows a staff person who is not a superuser only these
    (fcore.interfaces.admin.tenancy)."""
    memberships = Membership.objects.filter(user=user)
    if group is not None:
        memberships = memberships.filter(groups__name=group)
    return Tenant.objects.filter(pk__in=memberships.values("tenant_id"))


def _chosen(memberships: list[Membership], tenant_slug: str | None) -> Membership | None:
    """The membership of `tenant_slug` when the person holds one there, else their first."""
    for membership in memberships:
        if membership.tenant.slug == tenant_slug:
            return membership
    return memberships[0] if memberships else None


def principal_for_user(user, tenant_slug: str | None = None) -> Principal | None:
    """A person working in tenant `tenant_slug` (else in their first), or None when they
    are not signed in or belong to no tenant."""
    memberships = memberships_of(user)
    membership = _chosen(memberships, tenant_slug)
    if membership is None:
        return None
    groups = frozenset(g.name for g in membership.groups.all())
    scopes = set()
    for group in groups:
        scopes |= GROUP_SCOPES.get(group, set())
    return Principal(tenant=membership.tenant, actor=user_actor(user), scopes=frozenset(scopes),
                     groups=groups, is_machine=False,
                     tenants=tuple((m.tenant.slug, m.tenant.name) for m in memberships))


def principal_for_client(client, sub: str, scopes: set[str]) -> Principal:
    """A machine client acting as `sub` with the scopes it holds and the token asked for."""
    return Principal(tenant=client.tenant, actor=client_actor(sub), scopes=frozenset(scopes),
                     groups=None, is_machine=True, kid=client.kid)


def request_principal(request) -> Principal | None:
    principal = getattr(request, "_fc_principal", None)
    if principal is None:
        session = getattr(request, "session", None)
        principal = principal_for_user(getattr(request, "user", None),
                                       session.get(SESSION_TENANT_KEY) if session else None)
        request._fc_principal = principal
    return principal


def tenant_choose(request, slug: str) -> Principal | None:
    """Work in tenant `slug` for the rest of this session; None (nothing changed) unless
    the signed-in person is a member of it."""
    principal = principal_for_user(getattr(request, "user", None), slug)
    if principal is None or principal.tenant.slug != slug:
        return None
    request.session[SESSION_TENANT_KEY] = slug
    request._fc_principal = principal
    return principal
