"""API fuzzing with schemathesis against /api/schema/, authenticated with a valid token.

Every operation gets generated cases (positive and negative); no answer may be a server
error or violate the schema (status code documented, body matching its schema, content
type). At least 1,000 cases in all (FCORE_FUZZ_EXAMPLES per operation).
"""

import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from fcore.clients import api_client_create
from fcore.tokens import token_mint
from tests.conftest import ALL_SCOPES, load_bundle

EXAMPLES = int(os.environ.get("FCORE_FUZZ_EXAMPLES", "80"))
MINIMUM_CASES = 1000
CASES = {"count": 0}
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(db):
    load_bundle("docs/examples/pt004.yaml")
    from fcore.models import Tenant

    tenant = Tenant.objects.get(slug="tenant_omega")
    client, secret = api_client_create(tenant=tenant, name="fuzz", scopes=ALL_SCOPES.split(),
                                       actor="system:test")
    return token_mint(kid=client.kid, secret=secret, sub="fuzzer", tenant=tenant.slug,
                      scope=ALL_SCOPES, lifetime_s=3600)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Called through WSGI, Django closes the database connection at the end of each
    request; inside a test transaction that would close the test's own connection. The
    test client disconnects the same signal for the same reason."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _explore_past_the_failure_limit(settings):
    # negative cases send broken credentials on purpose; keep fuzzing past the limit
    settings.FCORE_AUTH_FAILURE_LIMIT = 10**9


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_matches_its_schema(case, token):
    # Every default check runs (no server error, status codes, content types and bodies
    # as documented, invalid input refused) except "schema-valid input is accepted": a
    # well-formed request for an unknown workflow is a documented 400.
    CASES["count"] += 1
    _short_waits(case)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[positive_data_acceptance])


def _short_waits(case) -> None:
    """A valid `wait_s` (a waiting claim or read, up to 30 s) becomes 0.01 s: a fuzzed
    claim finds no work and would wait it out, idle; an invalid one stays as generated.
    The waits themselves are tested in test_claims.py and test_waiting_reads.py."""
    for part in (case.body, case.query):
        wait = part.get("wait_s") if isinstance(part, dict) else None
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 30:
            part["wait_s"] = 0.01


def test_fuzzing_generated_enough_cases():
    """Runs after the operations above (file order): they generated ≥ 1,000 cases."""
    print(f"schemathesis cases: {CASES['count']}")  # shown with -s
    assert CASES["count"] >= MINIMUM_CASES, CASES
