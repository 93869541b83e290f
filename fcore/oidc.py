"""Signing people in with the organisation's OpenID Connect provider (mozilla-django-oidc).

Who a person is: the provider's `sub` for FC's issuer. Their Django username is
`oidc:<issuer host>:<sub>` (the host of FCORE_OIDC_ISSUER), so their actor, in votes and in
the audit trail, is `user:oidc:<issuer host>:<sub>`
(`fcore.actors.user_actor`). People are found by that name only, never by e-mail: an
address the provider lets someone change cannot take over another person's account.

What they may do: the provider's groups claim (FCORE_OIDC_GROUPS_CLAIM), mapped by
FCORE_OIDC_GROUP_MAP to FC's tenant groups, is applied at every sign-in. A tenant that the
map names is the provider's to manage: the person's membership there gets exactly the groups
their claim maps to, and ends when it maps to none. Tenants the map does not name are left
as an administrator set them. Every change goes through `fcore.members` (`FC-ADM-005`,
actor `system:oidc`). Claim values listed in FCORE_OIDC_STAFF_VALUES make a person staff
(Django admin, scoped to their tenants); when that setting is set, a person without such
a value loses staff at their next sign-in. Superuser is never given by the provider.

Beyond what the library checks (the ID token's signature, RS256 from the provider's JWKS,
and its nonce; PKCE), the backend checks the ID token's issuer and audience, and that the
userinfo answer is about the same `sub` (OpenID Connect Core 1.0, 5.3.2).
"""

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .actors import sub_problem
from .members import member_create, member_groups_set, member_remove
from .models import Membership, Tenant
from .tenancy import GROUP_SCOPES

log = logging.getLogger(__name__)
SYNC_ACTOR = "system:oidc"
USERNAME_PREFIX = "oidc:"
USERNAME_MAX_LENGTH = 150  # django.contrib.auth's username column


@dataclass(frozen=True)
class GroupMap:
    """Claim value → the (tenant slug, group) pairs it grants; `tenants` are those the
    provider manages."""

    grants: dict
    tenants: frozenset

    def targets(self, values) -> dict[str, set[str]]:
        """For each managed tenant, the groups these claim values grant there (maybe none)."""
        chosen: dict[str, set[str]] = {slug: set() for slug in self.tenants}
        for value in values:
            for slug, group in self.grants.get(value, ()):
                chosen[slug].add(group)
        return chosen


def group_map_parse(text: str) -> GroupMap:
    """Parse FCORE_OIDC_GROUP_MAP: a JSON object from claim value to `"tenant:group"` or a
    list of them, e.g. `{"fc-omega-approvers": "tenant_omega:approvers"}`. ValueError says
    what is wrong and where."""
    try:
        raw = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"FCORE_OIDC_GROUP_MAP is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("FCORE_OIDC_GROUP_MAP must be a JSON object "
                         '{"claim value": "tenant:group" or ["tenant:group", …]}')
    grants, tenants = {}, set()
    for value, targets in raw.items():
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, list) or not targets:
            raise ValueError(f"FCORE_OIDC_GROUP_MAP[{value!r}]: give \"tenant:group\" or a "
                             "non-empty list of them")
        pairs = []
        for target in targets:
            slug, sep, group = target.partition(":") if isinstance(target, str) else ("", "", "")
            if not (sep and slug and group):
                raise ValueError(f"FCORE_OIDC_GROUP_MAP[{value!r}]: {target!r} is not "
                                 "\"tenant:group\"")
            if group not in GROUP_SCOPES:
                raise ValueError(f"FCORE_OIDC_GROUP_MAP[{value!r}]: unknown group {group!r} "
                                 f"(FC's groups: {', '.join(sorted(GROUP_SCOPES))})")
            pairs.append((slug, group))
            tenants.add(slug)
        grants[value] = tuple(pairs)
    return GroupMap(grants=grants, tenants=frozenset(tenants))


def claim_values(claims: dict, name: str) -> list[str]:
    """The groups claim as a list of strings (a single string counts as one value; a
    missing claim as none). SuspiciousOperation for anything else."""
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise SuspiciousOperation(f"the {name!r} claim is neither a string nor a list of strings")


def issuer_host() -> str:
    """The host of FCORE_OIDC_ISSUER, which names the provider in usernames and actors."""
    return urlsplit(settings.FCORE_OIDC_ISSUER).hostname or ""


def provider_name() -> str:
    """The provider's name on the sign-in button: FCORE_OIDC_PROVIDER_NAME, else the
    issuer's host."""
    return settings.FCORE_OIDC_PROVIDER_NAME or issuer_host()


def username_for(sub) -> str:
    """`oidc:<issuer host>:<sub>`; SuspiciousOperation when `sub` cannot name an actor."""
    problem = sub_problem(sub)
    username = f"{USERNAME_PREFIX}{issuer_host()}:{sub}"
    if problem is None and len(username) > USERNAME_MAX_LENGTH:
        problem = f"the username would be longer than {USERNAME_MAX_LENGTH} characters"
    if problem:
        raise SuspiciousOperation(f"the provider's sub cannot be used: {problem}")
    return username


def is_provider_user(user) -> bool:
    """Whether this person's account belongs to an OIDC provider (its name is theirs)."""
    return user.get_username().startswith(USERNAME_PREFIX)


def memberships_sync(*, user, values: list[str], group_map: GroupMap) -> None:
    """Give `user` exactly the memberships `values` map to in the tenants the map manages
    (a map's tenant that does not exist is skipped, with a warning). One person's syncs run
    one at a time: the user row is locked first, then each membership, then the stream."""
    wanted = group_map.targets(values)
    with transaction.atomic():
        get_user_model().objects.select_for_update().get(pk=user.pk)
        tenants = {t.slug: t for t in Tenant.objects.filter(slug__in=wanted)}
        current = {m.tenant.slug: m for m in Membership.objects.filter(
            user=user, tenant__slug__in=wanted).select_related("tenant")}
        for slug, groups in sorted(wanted.items()):
            if slug not in tenants:
                log.warning("FCORE_OIDC_GROUP_MAP names tenant %r, which does not exist", slug)
                continue
            membership = current.get(slug)
            if membership is None and groups:
                member_create(tenant=tenants[slug], user=user, groups=sorted(groups),
                              actor=SYNC_ACTOR)
            elif membership is not None and groups:
                member_groups_set(membership=membership, groups=sorted(groups),
                                  actor=SYNC_ACTOR)
            elif membership is not None:
                member_remove(membership=membership, actor=SYNC_ACTOR)


class ProviderBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, finding people by their provider subject and applying
    the groups claim at each sign-in (the module docstring says how)."""

    def get_userinfo(self, access_token, id_token, payload):
        """The userinfo claims, after checking the ID token's issuer and audience and that
        userinfo names the ID token's `sub`; claims only the ID token carries are kept."""
        if payload.get("iss") != settings.FCORE_OIDC_ISSUER:
            raise SuspiciousOperation("the ID token's issuer is not FCORE_OIDC_ISSUER")
        audience = payload.get("aud")
        audience = [audience] if isinstance(audience, str) else audience or []
        if self.OIDC_RP_CLIENT_ID not in audience:
            raise SuspiciousOperation("the ID token is not for this client")
        claims = super().get_userinfo(access_token, id_token, payload)
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo is about another subject than the ID token")
        return {**payload, **claims}

    def verify_claims(self, claims):
        """A usable `sub` and a well-formed groups claim (e-mail is not required)."""
        username_for(claims.get("sub"))
        claim_values(claims, settings.FCORE_OIDC_GROUPS_CLAIM)
        return True

    def filter_users_by_claims(self, claims):
        """The one person whose username is this subject's (never a match by e-mail)."""
        return self.UserModel.objects.filter(username=username_for(claims.get("sub")))

    def create_user(self, claims):
        """A new person without a local password, then `update_user`. Two first sign-ins at
        once: the second finds the first's row."""
        username = username_for(claims.get("sub"))
        try:
            with transaction.atomic():
                user = self.UserModel.objects.create_user(username)
        except IntegrityError:
            user = self.UserModel.objects.get(username=username)
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        """Copy e-mail (unless the provider says it is not verified: gate notifications go
        there) and names, staff from FCORE_OIDC_STAFF_VALUES when set, and the memberships
        the groups claim maps to."""
        values = claim_values(claims, settings.FCORE_OIDC_GROUPS_CLAIM)
        if claims.get("email_verified") is not False:
            user.email = str(claims.get("email") or user.email)[:254]
        user.first_name = str(claims.get("given_name") or user.first_name)[:150]
        user.last_name = str(claims.get("family_name") or user.last_name)[:150]
        if settings.FCORE_OIDC_STAFF_VALUES:
            user.is_staff = bool(set(values) & set(settings.FCORE_OIDC_STAFF_VALUES))
        user.set_unusable_password()
        user.save()
        memberships_sync(user=user, values=values,
                         group_map=group_map_parse(settings.FCORE_OIDC_GROUP_MAP))
        return user
