"""Token checks: 401 for a bad or expired token, 403 for a missing scope."""

import json
import time

import pytest

from fcore.clients import api_client_create, api_client_revoke
from fcore.models import ApiClient
from fcore.tokens import b64url, token_sign

pytestmark = pytest.mark.django_db
PATH = "/workflows/runs"


def status_of(api, token):
    return api.call("GET", PATH, token=token)


def assert_401(response):
    assert response.status_code == 401, response.content
    assert response.json()["code"] in {"authentication_failed", "not_authenticated"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_valid_token_is_accepted(api):
    assert status_of(api, api.token()).status_code == 200


def test_missing_token(api):
    response = api.http.get(PATH)
    assert_401(response)


@pytest.mark.parametrize("token", ["", "omega_", "omega_abc", "bearer-me", "omega_a.b.c",
                                   "omega_!!!.sig", "omega_" + b64url(b"[1,2]") + ".x"])
def test_malformed_tokens(api, token):
    response = api.http.get(PATH, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_401(response)


def test_wrong_scheme(api):
    assert_401(api.http.get(PATH, HTTP_AUTHORIZATION=f"Basic {api.token()}"))


def test_forged_signature(api):
    good = api.token()
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert_401(status_of(api, forged))


def test_token_signed_with_another_secret(api):
    assert_401(status_of(api, api.token(secret="not-the-secret")))


def test_tampered_claims_break_the_signature(api):
    p, s = api.token()[len("omega_"):].split(".")
    claims = json.loads(__import__("fcore.tokens", fromlist=["x"]).b64url_decode(p))
    claims["scope"] += " audit:read"
    claims["sub"] = "someone_else"
    tampered = "omega_" + b64url(json.dumps(claims).encode()) + "." + s
    assert_401(status_of(api, tampered))


def test_expired_token(api):
    old = int(time.time()) - 4000
    assert_401(status_of(api, api.token(now=old, lifetime_s=3000)))


def test_expiry_leeway_of_30_seconds(api):
    now = int(time.time())
    assert status_of(api, api.token(now=now - 110, lifetime_s=100)).status_code == 200
    assert_401(status_of(api, api.token(now=now - 140, lifetime_s=100)))


def test_lifetime_over_one_hour(api):
    assert_401(status_of(api, api.token(lifetime_s=3601)))


def test_issued_in_the_future(api):
    assert_401(status_of(api, api.token(now=int(time.time()) + 600)))


def test_token_claiming_another_tenant(api):
    assert_401(status_of(api, api.token(tenant="tenant_sigma")))


def test_another_tenants_key(api, other_tenant):
    client, secret = api_client_create(tenant=other_tenant, name="sigma", actor="system:test",
                                       scopes=["runs:read"])
    token = api.token(kid=client.kid, secret=secret, tenant="tenant_sigma", scope="runs:read")
    response = status_of(api, token)
    assert response.status_code == 200
    assert response.json()["results"] == []  # sigma sees none of omega's runs


def test_revoked_key_is_refused_at_once(api):
    token = api.token()
    assert status_of(api, token).status_code == 200
    api_client_revoke(client=ApiClient.objects.get(kid=api.kid), actor="system:test")
    assert_401(status_of(api, token))


def test_unknown_kid(api):
    assert_401(status_of(api, api.token(kid="kid_unknown")))


@pytest.mark.parametrize("method,path,body,scope", [
    ("GET", "/workflows/runs", None, "runs:read"),
    ("POST", "/workflows/runs", {"workflow": "pt004_execution_spine"}, "runs:write"),
    ("GET", "/workflows/audit", None, "audit:read"),
    ("GET", "/workflows/audit/verify", None, "audit:read"),
])
def test_missing_scope_is_403(api, method, path, body, scope):
    others = " ".join(s for s in api.scope.split() if s != scope)
    response = api.as_sub("limited", scope=others).call(method, path, body)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden" and scope in response.json()["detail"]


def test_scope_beyond_the_clients_own_is_not_granted(api, pt004):
    client, secret = api_client_create(tenant=pt004, name="reader", actor="system:test",
                                       scopes=["runs:read"])
    token = api.token(kid=client.kid, secret=secret, scope="runs:read runs:write")
    response = api.call("POST", PATH, {"workflow": "pt004_execution_spine"}, token=token)
    assert response.status_code == 403


def test_signature_is_over_the_prefixed_payload(api):
    p = api.token()[len("omega_"):].split(".")[0]
    unprefixed = "omega_" + p + "." + b64url(__import__("hmac").new(
        api.secret.encode(), p.encode(), "sha256").digest())
    assert_401(status_of(api, unprefixed))
    assert status_of(api, "omega_" + p + "." + token_sign(p, api.secret)).status_code == 200
