"""Fixtures of the gates tests: webhook receivers and quick retries."""

import pytest

from .webhook_receiver import Receiver


@pytest.fixture
def receiver_factory():
    made = []

    def make(*args, **kwargs):
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def quick_retries(settings):
    settings.FCORE_WEBHOOK_BACKOFF_S = 0  # eager Celery retries at once
    settings.FCORE_WEBHOOK_MAX_ATTEMPTS = 4
    settings.FCORE_WEBHOOK_TIMEOUT_S = 1.0
