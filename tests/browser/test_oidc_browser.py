"""Signing in with a real OpenID Connect provider, in Chromium.

The test starts the npm `oidc-provider` (tests/oidc/, installed by .ci/run with `npm ci`)
on a free port, registers FC's callback as its client's redirect URI, and gives it one
account whose claims carry a `sub` and a groups claim. Local passwords are off. An
approver then signs in through the provider's own login and consent pages, gets the tenant
membership the groups claim maps to, approves a gate, and finds the provider's `sub` in the
vote's actor (the API's gate answer) and in the run's evidence pack.
"""

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fcore.clients import api_client_create
from fcore.models import Membership, Tenant
from fcore.tokens import token_mint
from gates.models import Gate, GateStatus
from tests.conftest import load_bundle, service_missing

from .test_console_browser import CHROMIUM, SHOTS, browser, paused_run  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.login_lockout,
              pytest.mark.django_db(transaction=True)]
PROVIDER_DIR = Path(__file__).resolve().parents[1] / "oidc"
PORTS = range(9100, 9200)
SUB = "248289761001-ada"
CLIENT_ID, CLIENT_SECRET = "federation-core", "a-client-secret-for-the-test-only"
GROUP_MAP = {"idp-omega-approvers": "tenant_omega:approvers"}


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture
def provider(live_server, tmp_path):
    """The running provider: its issuer and discovery document."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        service_missing("the npm oidc-provider (npm ci in tests/oidc) and Node.js")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = tmp_path / "provider.json"
    config.write_text(json.dumps({
        "port": port, "issuer": issuer,
        "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [f"{live_server.url}/oidc/callback/"]},
        "accounts": {SUB: {"email": "ada@example.org", "email_verified": True,
                           "given_name": "Ada", "family_name": "Lovelace",
                           "groups": ["idp-omega-approvers", "idp-unrelated"]}},
    }))
    process = subprocess.Popen([node, str(PROVIDER_DIR / "provider.mjs"), str(config)],
                               cwd=PROVIDER_DIR, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while not line.startswith("ready") and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        assert line.startswith("ready"), f"the provider did not start: {line!r}"
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        yield {"issuer": issuer, "discovery": discovery}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def provider_sign_in(settings, provider):
    """FC configured for the provider, with local passwords off (as fcore.settings would
    compose it from FCORE_OIDC_* and FCORE_LOCAL_PASSWORDS=0)."""
    found = provider["discovery"]
    settings.FCORE_LOCAL_PASSWORDS = False
    settings.FCORE_OIDC_ENABLED = True
    settings.FCORE_OIDC_ISSUER = provider["issuer"]
    settings.FCORE_OIDC_PROVIDER_NAME = "Example IdP"
    settings.FCORE_OIDC_GROUP_MAP = json.dumps(GROUP_MAP)
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = found["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = found["token_endpoint"]
    settings.OIDC_OP_USER_ENDPOINT = found["userinfo_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = found["jwks_uri"]
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend",
                                        "fcore.oidc.ProviderBackend"]
    return provider


def test_sign_in_with_the_provider_approve_and_find_its_subject(live_server, browser,  # noqa: F811
                                                               provider_sign_in):
    load_bundle("docs/examples/pt004.yaml")
    tenant = Tenant.objects.get(slug="tenant_omega")
    run = paused_run(tenant, creator="user:olivia")
    gate = Gate.objects.get(run=run)
    page = browser.new_page()

    page.goto(f"{live_server.url}/console/")
    assert page.get_by_label("Password").count() == 0  # local passwords are off
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "oidc-login.png"), full_page=False)
    page.get_by_role("button", name="Sign in with Example IdP").click()

    # the provider's own pages: its login form (the login name is the account's sub) …
    page.wait_for_url(f"{provider_sign_in['issuer']}/interaction/**")
    page.locator("input[name=login]").fill(SUB)
    page.locator("input[name=password]").fill("anything")
    page.locator("button[type=submit]").click()
    # … and its consent page, for the scopes FC asked (openid email profile groups)
    page.wait_for_url(f"{provider_sign_in['issuer']}/interaction/**")
    assert "groups" in page.content()
    page.locator("button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/console/", timeout=15_000)

    actor = f"user:oidc:127.0.0.1:{SUB}"
    membership = Membership.objects.get(tenant=tenant, user__username=f"oidc:127.0.0.1:{SUB}")
    assert sorted(g.name for g in membership.groups.all()) == ["approvers"]
    assert membership.user.email == "ada@example.org"
    assert not membership.user.has_usable_password()

    card = page.locator(f"#gate-{gate.id}")
    card.wait_for(timeout=10_000)
    card.get_by_label("Comment").fill("approved after signing in with the IdP")
    card.get_by_role("button", name="Approve").click()
    card.wait_for(state="detached", timeout=10_000)
    page.screenshot(path=str(SHOTS / "oidc-signed-in.png"), full_page=False)

    gate.refresh_from_db()
    assert gate.status == GateStatus.APPROVED
    assert gate.approvals.get().actor == actor

    # the API shows the vote's actor …
    client, secret = api_client_create(tenant=tenant, name="reader", scopes=["runs:read"],
                                       actor="system:test")
    token = token_mint(kid=client.kid, secret=secret, sub="reader", tenant=tenant.slug,
                       scope="runs:read")
    answer = httpx.get(f"{live_server.url}/workflows/runs/{run.run_id}/gates/{gate.id}",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert [v["actor"] for v in answer.json()["approvals"]] == [actor]

    # … and the evidence pack the console gives the signed-in person names the subject
    pack = page.request.get(f"{live_server.url}/console/runs/{run.run_id}/evidence.json")
    assert pack.status == 200
    evidence = json.loads(pack.text())
    [gate_out] = [g for g in evidence["gates"] if g["gate_id"] == gate.id]
    assert [v["actor"] for v in gate_out["approvals"]] == [actor]
    votes = [e for e in evidence["events"] if e["code"] == "FC-GATE-002"]
    assert votes and all(e["actor"] == actor for e in votes)
