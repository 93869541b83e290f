import pytest

from .helpers import HANDLERS, LEASE_S, load_workflows, purge_broker, require_postgres_and_redis


@pytest.fixture
def tenant(settings):
    """PostgreSQL + Redis checked, this process set up like the workers (the lease that
    `run_create` gives the first steps, the `slow` handler registered), the fault
    workflows loaded, the broker empty."""
    require_postgres_and_redis()
    settings.FCORE_STEP_LEASE_S = LEASE_S
    settings.FCORE_STEP_HANDLERS = HANDLERS.split(",")
    tenant = load_workflows()
    purge_broker()
    yield tenant
    purge_broker()
