"""Test fixtures shared by every app.

Two ways work leaves the web process in tests:
- by default Celery runs eagerly and on-commit callbacks are captured and executed, so a
  test sees the run move as far as it can (`advance` fixture, `api` client);
- tests marked `worker` use committed transactions and a real Celery worker subprocess
  consuming from the configured broker (Redis on the PostgreSQL run).

With FCORE_REQUIRE_SERVICES=1 a missing PostgreSQL, Redis or Chromium is a failure, not a
skip.
"""

import asyncio
import json
import os

import pytest
import yaml
from django.db import connections
from django.test import testcases
from rest_framework.test import APIClient

from audit.immutability import triggers_suspended
from fcore import celery_app
from fcore.clients import api_client_create
from fcore.models import Tenant
from fcore.tokens import token_mint

REQUIRE_SERVICES = os.environ.get("FCORE_REQUIRE_SERVICES") == "1"
WORKER_MODE = os.environ.get("FCORE_TEST_WORKER") == "1"

celery_app.conf.task_always_eager = not WORKER_MODE
celery_app.conf.task_eager_propagates = True

# Transactional tests empty every table afterwards; the audit table refuses that, so the
# flush runs with the immutability triggers suspended (what a superuser could do).
_original_teardown = testcases.TransactionTestCase._fixture_teardown


def _fixture_teardown(self):
    with triggers_suspended(connections["default"]):
        _original_teardown(self)


testcases.TransactionTestCase._fixture_teardown = _fixture_teardown


def pytest_collection_modifyitems(config, items):
    """Worker-mode runs (FCORE_TEST_WORKER=1) take only `worker` tests, other runs none of
    them: the two need different Celery settings in this process."""
    keep, drop = [], []
    for item in items:
        (keep if (item.get_closest_marker("worker") is not None) == WORKER_MODE
         else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Before the test's fixtures are torn down: close the connections it opened while an
    asyncio loop was running in this thread."""
    _close_loop_context_connections()
    return (yield)


def _close_loop_context_connections() -> None:
    """Playwright's sync API (the browser tests) keeps an asyncio loop running in this
    thread while a browser is open. Django then keeps this thread's connections in a
    second, context-local set (asgiref's thread-critical Local), which Django's test
    teardown never sees: it runs after the browser fixture has stopped the loop. Left
    open, such a connection lives to the end of the session and PostgreSQL refuses to drop
    the test database ("being accessed by other users"). Closed here while the loop still
    runs, i.e. while that set is still the one `connections` answers with."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            conn.close()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttling counters live in the cache, definitions and tenant slugs in the engine's
    per-process cache (ids are reused after a test's rollback): every test starts with none."""
    from django.core.cache import cache

    from runs.engine import process_caches_clear

    process_caches_clear()

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _plain_authentication(settings, request):
    """django-axes refuses authenticate() without a request, which the test client's
    login() does not pass; tests that check the lockout mark themselves `login_lockout`."""
    if request.node.get_closest_marker("login_lockout") is None:
        settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
        settings.AXES_ENABLED = False


def service_missing(what: str):
    """Fail under FCORE_REQUIRE_SERVICES=1, else skip."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (FCORE_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def load_bundle(path: str, *, actor: str = "system:test") -> dict:
    from runs.bundles import bundle_load

    with open(path, encoding="utf-8") as fh:
        return bundle_load(yaml.safe_load(fh), actor=actor, source=path)


@pytest.fixture
def pt004(db):
    """The demo tenant with the PT-004 workflow and its flag/deny policies."""
    load_bundle("docs/examples/pt004.yaml")
    load_bundle("docs/examples/demo.yaml")
    return Tenant.objects.get(slug="tenant_omega")


@pytest.fixture
def other_tenant(db):
    load_bundle("docs/examples/pt004.yaml")
    data = yaml.safe_load(open("docs/examples/pt004.yaml", encoding="utf-8"))
    data["tenant"] = "tenant_sigma"
    from runs.bundles import bundle_load

    bundle_load(data, actor="system:test")
    return Tenant.objects.get(slug="tenant_sigma")


@pytest.fixture
def advance(django_capture_on_commit_callbacks):
    """Context manager: run the block, then everything it enqueued, until nothing is left."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


ALL_SCOPES = "runs:read runs:write gates:request gates:resolve audit:read tasks:claim"


class Api:
    """Calls the API as `sub` with a token from a real ApiClient; runs what it enqueues."""

    def __init__(self, client, kid, secret, tenant, advance, sub="harness", scope=ALL_SCOPES):
        self.http, self.kid, self.secret, self.tenant = client, kid, secret, tenant
        self.advance, self.sub, self.scope = advance, sub, scope

    def as_sub(self, sub: str, scope: str | None = None) -> "Api":
        return Api(self.http, self.kid, self.secret, self.tenant, self.advance, sub=sub,
                   scope=scope or self.scope)

    def token(self, **overrides) -> str:
        args = {"kid": self.kid, "secret": self.secret, "sub": self.sub,
                "tenant": self.tenant, "scope": self.scope, **overrides}
        return token_mint(**args)

    def call(self, method: str, path: str, body=None, *, token: str | None = None, raw=None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token or self.token()}"}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        with self.advance():
            response = getattr(self.http, method.lower())(
                path, data=data, content_type="application/json", **headers)
        return response

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)


@pytest.fixture
def api_credentials(pt004):
    client, secret = api_client_create(tenant=pt004, name="harness",
                                       scopes=ALL_SCOPES.split(), actor="system:test")
    return client.kid, secret


@pytest.fixture
def api(pt004, api_credentials, advance):
    kid, secret = api_credentials
    return Api(APIClient(), kid, secret, pt004.slug, advance)


@pytest.fixture
def approver(api):
    return api.as_sub("second_approver")


def person(username: str, *permissions: str):
    """A real, active Django user holding `permissions` ("app_label.codename")."""
    from django.contrib.auth.models import Permission, User

    user, _ = User.objects.get_or_create(username=username)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions
