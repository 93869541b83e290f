"""OIDC sign-in without a browser: the groups-claim map, the backend's hooks (who a person
is, what memberships their claim gives them, the token checks), the login pages with local
passwords on and off, and the settings and system check that configure it. The sign-in
against a real provider is tests/browser/test_oidc_browser.py."""

import json
import os
import subprocess
import sys
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.test import Client
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from audit.models import AuditEvent
from audit.services import admin_stream_name
from fcore.checks import oidc_configured
from fcore.members import member_set
from fcore.models import Membership
from fcore.oidc import (
    SYNC_ACTOR,
    ProviderBackend,
    claim_values,
    group_map_parse,
    username_for,
)

ISSUER = "https://idp.example.org/realms/fc"
GROUP_MAP = {"omega-approvers": "tenant_omega:approvers",
             "omega-ops": ["tenant_omega:operators", "tenant_omega:approvers"],
             "sigma-audit": "tenant_sigma:auditors"}


@pytest.fixture
def oidc(settings):
    """A configured provider (no network is used by these tests)."""
    settings.FCORE_OIDC_ENABLED = True
    settings.FCORE_OIDC_ISSUER = ISSUER
    settings.FCORE_OIDC_PROVIDER_NAME = ""
    settings.FCORE_OIDC_GROUP_MAP = json.dumps(GROUP_MAP)
    settings.FCORE_OIDC_STAFF_VALUES = []
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = "fc", "client-secret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{ISSUER}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{ISSUER}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{ISSUER}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{ISSUER}/jwks"
    return settings


# --- the map ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, grants", [
    ("{}", {}),
    ('{"a": "t1:approvers"}', {"a": (("t1", "approvers"),)}),
    ('{"cn=ops,ou=groups,dc=example": ["t1:operators", "t2:auditors"]}',
     {"cn=ops,ou=groups,dc=example": (("t1", "operators"), ("t2", "auditors"))}),
])
def test_group_map_parses(text, grants):
    parsed = group_map_parse(text)
    assert parsed.grants == grants
    assert parsed.tenants == {slug for pairs in grants.values() for slug, _ in pairs}


@pytest.mark.parametrize("text, message", [
    ("{", "is not JSON"),
    ('["t1:approvers"]', "must be a JSON object"),
    ('{"a": []}', "non-empty list"),
    ('{"a": 3}', "non-empty list"),
    ('{"a": "approvers"}', "is not \"tenant:group\""),
    ('{"a": [":approvers"]}', "is not \"tenant:group\""),
    ('{"a": ["t1:"]}', "is not \"tenant:group\""),
    ('{"a": [7]}', "is not \"tenant:group\""),
    ('{"a": "t1:admins"}', "unknown group 'admins'"),
])
def test_group_map_refuses_with_the_place_of_the_fault(text, message):
    with pytest.raises(ValueError, match=message):
        group_map_parse(text)


def test_targets_cover_every_managed_tenant_and_union_the_groups():
    parsed = group_map_parse(json.dumps(GROUP_MAP))
    assert parsed.targets(["omega-approvers", "omega-ops", "unmapped"]) == {
        "tenant_omega": {"approvers", "operators"}, "tenant_sigma": set()}
    assert parsed.targets([]) == {"tenant_omega": set(), "tenant_sigma": set()}


@pytest.mark.parametrize("claims, values", [
    ({}, []), ({"groups": None}, []), ({"groups": "a"}, ["a"]),
    ({"groups": ["a", "b"]}, ["a", "b"]),
])
def test_claim_values(claims, values):
    assert claim_values(claims, "groups") == values


@pytest.mark.parametrize("bad", [{"groups": {"a": 1}}, {"groups": ["a", 2]}, {"groups": 5}])
def test_a_malformed_groups_claim_is_refused(bad):
    with pytest.raises(SuspiciousOperation, match="groups"):
        claim_values(bad, "groups")


def test_username_names_the_issuer_host_and_the_subject(oidc):
    assert username_for("248289761001") == "oidc:idp.example.org:248289761001"


@pytest.mark.parametrize("sub", [None, "", " x", "a b", "x\n", "é", "a" * 140])
def test_a_subject_that_cannot_name_an_actor_is_refused(oidc, sub):
    with pytest.raises(SuspiciousOperation, match="sub cannot be used"):
        username_for(sub)


# --- the backend's hooks ----------------------------------------------------------------

def adm_events(tenant):
    return list(AuditEvent.objects.filter(stream__name=admin_stream_name(tenant.slug),
                                          code="FC-ADM-005").order_by("seq"))


def sign_in(claims):
    """What the backend does with a provider's verified claims (get_or_create_user)."""
    backend = ProviderBackend()
    users = backend.filter_users_by_claims(claims)
    assert backend.verify_claims(claims)
    return backend.update_user(users[0], claims) if users else backend.create_user(claims)


def groups_in(user, slug):
    membership = Membership.objects.filter(user=user, tenant__slug=slug).first()
    return None if membership is None else sorted(g.name for g in membership.groups.all())


@pytest.mark.django_db
def test_each_sign_in_sets_the_memberships_the_claim_maps_to(oidc, pt004, other_tenant):
    claims = {"sub": "u-1", "email": "ada@example.org", "groups": ["omega-approvers"]}
    user = sign_in(claims)
    assert user.get_username() == "oidc:idp.example.org:u-1"
    assert not user.has_usable_password() and user.email == "ada@example.org"
    assert groups_in(user, "tenant_omega") == ["approvers"]
    assert groups_in(user, "tenant_sigma") is None

    same = sign_in({**claims, "groups": ["omega-ops", "sigma-audit", "not-mapped"]})
    assert same.pk == user.pk and get_user_model().objects.count() == 1
    assert groups_in(user, "tenant_omega") == ["approvers", "operators"]
    assert groups_in(user, "tenant_sigma") == ["auditors"]

    sign_in({**claims, "groups": ["sigma-audit"]})  # the claim no longer lists omega
    assert groups_in(user, "tenant_omega") is None
    assert groups_in(user, "tenant_sigma") == ["auditors"]

    created, changed, removed = adm_events(pt004)
    assert [e.data["action"] for e in (created, changed, removed)] == [
        "created", "changed", "removed"]
    assert {e.actor for e in (created, changed, removed)} == {SYNC_ACTOR}
    assert removed.data["old_groups"] == ["approvers", "operators"]


@pytest.mark.django_db
def test_tenants_the_map_does_not_name_are_left_alone(oidc, pt004, other_tenant, settings):
    settings.FCORE_OIDC_GROUP_MAP = json.dumps({"omega-approvers": "tenant_omega:approvers"})
    user = sign_in({"sub": "u-2", "groups": ["omega-approvers"]})
    member_set(tenant=other_tenant, username=user.get_username(), groups=["operators"],
               actor="user:admin")
    sign_in({"sub": "u-2", "groups": []})
    assert groups_in(user, "tenant_omega") is None
    assert groups_in(user, "tenant_sigma") == ["operators"]


@pytest.mark.django_db
def test_a_map_tenant_that_does_not_exist_is_skipped(oidc, pt004, settings):
    settings.FCORE_OIDC_GROUP_MAP = json.dumps({"g": ["tenant_gone:approvers",
                                                      "tenant_omega:approvers"]})
    user = sign_in({"sub": "u-3", "groups": ["g"]})
    assert groups_in(user, "tenant_omega") == ["approvers"]


@pytest.mark.django_db
def test_people_are_found_by_subject_never_by_email(oidc, pt004):
    local = get_user_model().objects.create_user("ada", email="ada@example.org")
    user = sign_in({"sub": "u-4", "email": "ada@example.org", "groups": []})
    assert user.pk != local.pk


@pytest.mark.django_db
def test_an_address_the_provider_has_not_verified_is_not_taken(oidc, pt004):
    user = sign_in({"sub": "u-8", "email": "a@example.org", "email_verified": False})
    assert user.email == ""
    assert sign_in({"sub": "u-8", "email": "b@example.org"}).email == "b@example.org"


@pytest.mark.django_db
def test_staff_follows_the_configured_claim_values(oidc, pt004, settings):
    settings.FCORE_OIDC_STAFF_VALUES = ["fc-admins"]
    user = sign_in({"sub": "u-5", "groups": ["fc-admins"]})
    assert user.is_staff and not user.is_superuser
    assert not sign_in({"sub": "u-5", "groups": []}).is_staff
    settings.FCORE_OIDC_STAFF_VALUES = []  # unset: FC leaves staff as an admin set it
    get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    assert sign_in({"sub": "u-5", "groups": []}).is_staff


ID_TOKEN = {"iss": ISSUER, "aud": "fc", "sub": "u-6", "nonce": "n", "groups": ["a"]}


@pytest.mark.parametrize("payload, userinfo, message", [
    ({**ID_TOKEN, "iss": "https://evil.example"}, {"sub": "u-6"}, "issuer"),
    ({**ID_TOKEN, "aud": ["other-client"]}, {"sub": "u-6"}, "not for this client"),
    (ID_TOKEN, {"sub": "someone-else"}, "another subject"),
])
def test_the_backend_refuses_tokens_not_meant_for_it(oidc, payload, userinfo, message):
    with mock.patch.object(OIDCAuthenticationBackend, "get_userinfo", return_value=userinfo):
        with pytest.raises(SuspiciousOperation, match=message):
            ProviderBackend().get_userinfo("access", "id-token", payload)


def test_claims_only_the_id_token_carries_are_kept(oidc):
    with mock.patch.object(OIDCAuthenticationBackend, "get_userinfo",
                           return_value={"sub": "u-6", "email": "e@example.org"}):
        claims = ProviderBackend().get_userinfo("access", "id-token",
                                                {**ID_TOKEN, "aud": ["fc", "x"]})
    assert claims["groups"] == ["a"] and claims["email"] == "e@example.org"


# --- the login pages --------------------------------------------------------------------

PASSWORD = "a-long-local-password"


@pytest.fixture
def local_person(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_user("lou", password=PASSWORD, is_staff=True)


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/console/login/", "/admin/login/"])
def test_with_passwords_off_the_page_offers_the_provider_only(oidc, local_person, page):
    oidc.FCORE_LOCAL_PASSWORDS = False
    oidc.FCORE_OIDC_PROVIDER_NAME = "Example IdP"
    client = Client(enforce_csrf_checks=True)
    body = client.get(page).content.decode()
    assert "Sign in with Example IdP" in body and 'type="password"' not in body
    assert 'action="/oidc/authenticate/' in body
    csrf = client.cookies["csrftoken"].value
    refused = client.post(page, {"username": "lou", "password": PASSWORD,
                                 "csrfmiddlewaretoken": csrf})
    assert refused.status_code == 403
    assert "Password sign-in is switched off" in refused.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
@pytest.mark.parametrize("page, after", [("/console/login/", "/console/"),
                                         ("/admin/login/?next=/admin/", "/admin/")])
def test_with_passwords_on_both_ways_are_offered_and_a_password_works(oidc, local_person,
                                                                     page, after):
    client = Client()
    body = client.get(page).content.decode()
    assert "Sign in with idp.example.org" in body and 'type="password"' in body
    signed_in = client.post(page, {"username": "lou", "password": PASSWORD,
                                   "next": after})
    assert signed_in.status_code == 302 and signed_in["Location"] == after
    assert client.session["_auth_user_id"] == str(local_person.pk)


@pytest.mark.django_db
def test_a_password_session_ends_when_passwords_are_switched_off(oidc, local_person, pt004):
    member_set(tenant=pt004, username="lou", groups=["approvers"])
    client = Client()
    client.force_login(local_person, backend="django.contrib.auth.backends.ModelBackend")
    assert client.get("/console/").status_code == 200
    oidc.FCORE_LOCAL_PASSWORDS = False
    oidc.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend",
                                    "fcore.oidc.ProviderBackend"]
    answer = client.get("/console/")
    assert answer.status_code == 302 and answer["Location"].startswith("/console/login/")


@pytest.mark.django_db
def test_without_a_provider_the_pages_have_no_button_and_its_urls_are_absent(settings):
    settings.FCORE_OIDC_ENABLED = False
    assert "Sign in with" not in Client().get("/console/login/").content.decode()
    assert Client().post("/oidc/authenticate/").status_code == 404
    assert Client().get("/oidc/callback/?code=x&state=y").status_code == 404


@pytest.mark.django_db
def test_the_button_sends_the_person_to_the_provider_with_pkce(oidc):
    answer = Client().post("/oidc/authenticate/?next=/console/runs/")
    assert answer.status_code == 302
    location = answer["Location"]
    assert location.startswith(f"{ISSUER}/auth?")
    assert "code_challenge_method=S256" in location and "client_id=fc" in location
    assert Client().get("/oidc/authenticate/").status_code == 405  # GET changes nothing


@pytest.mark.django_db
def test_the_login_page_lets_its_form_reach_the_provider(oidc):
    policy = Client().get("/console/login/")["Content-Security-Policy"]
    form_action = next(d for d in policy.split(";") if d.strip().startswith("form-action"))
    assert "'self'" in form_action and "https://idp.example.org" in form_action
    assert "idp.example.org" not in Client().get("/healthz")["Content-Security-Policy"]


@pytest.mark.django_db
def test_a_failed_provider_sign_in_says_so(oidc):
    body = Client().get("/console/login/?provider=failed").content.decode()
    assert "did not succeed" in body


@pytest.mark.django_db
def test_admin_keeps_a_provider_persons_username(oidc, pt004):
    user = sign_in({"sub": "u-7", "groups": []})
    admin = get_user_model().objects.create_superuser("root", password="x" * 12)
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert 'name="username"' not in page and "oidc:idp.example.org:u-7" in page
    local = client.get(f"/admin/auth/user/{admin.pk}/change/").content.decode()
    assert 'name="username"' in local


# --- settings and the system check ------------------------------------------------------

def settings_in_a_fresh_process(tmp_path, **env) -> subprocess.CompletedProcess:
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.AUTHENTICATION_BACKENDS)")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FCORE_OIDC")}
    environ.update(DJANGO_SETTINGS_MODULE="fcore.settings", FCORE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=60)


def test_settings_compose_the_sign_in_backends(tmp_path):
    default = settings_in_a_fresh_process(tmp_path)
    assert "ModelBackend" in default.stdout and "ProviderBackend" not in default.stdout
    both = settings_in_a_fresh_process(tmp_path, FCORE_OIDC_ISSUER=ISSUER)
    assert "ModelBackend" in both.stdout and "fcore.oidc.ProviderBackend" in both.stdout
    provider_only = settings_in_a_fresh_process(tmp_path, FCORE_OIDC_ISSUER=ISSUER,
                                                FCORE_LOCAL_PASSWORDS="0")
    assert "ProviderBackend" in provider_only.stdout
    assert "ModelBackend" not in provider_only.stdout
    nobody = settings_in_a_fresh_process(tmp_path, FCORE_LOCAL_PASSWORDS="0")
    assert nobody.returncode != 0 and "nobody could sign in" in nobody.stderr


def test_the_system_check_names_what_the_provider_lacks(oidc):
    assert oidc_configured(None) == []
    oidc.OIDC_OP_JWKS_ENDPOINT = ""
    oidc.FCORE_OIDC_GROUP_MAP = '{"a": "t:nope"}'
    errors = oidc_configured(None)
    assert [e.id for e in errors] == ["fcore.E003", "fcore.E003"]
    assert "FCORE_OIDC_JWKS_ENDPOINT" in errors[0].msg and "unknown group" in errors[1].msg
    oidc.FCORE_OIDC_ENABLED = False
    assert oidc_configured(None) == []
