"""Fixtures shared by the engine tests."""

import pytest

from audit.verify import audit_verify


@pytest.fixture
def audit_streams_verify(request):
    """After a database test, every audit stream still verifies."""
    yield
    if request.node.get_closest_marker("django_db"):
        report = audit_verify(checkpoints=False)
        assert report.ok, report.failures
