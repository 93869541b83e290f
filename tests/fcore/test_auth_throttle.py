"""The failed-token throttle: the client address behind trusted proxies, one counter per
key id (else per address), shared between processes through Redis."""

import os
import uuid

import pytest
from django.core.cache import caches
from django.test import RequestFactory

from fcore.clients import api_client_create
from fcore.interfaces.api import auth
from fcore.proxies import client_ip
from tests.conftest import ALL_SCOPES, service_missing

pytestmark = pytest.mark.django_db
PATH = "/workflows/runs"
# the PostgreSQL run's broker (a Redis database of its own), else the local default
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
REDIS_URL = BROKER_URL if BROKER_URL.startswith("redis://") else "redis://127.0.0.1:6379/13"
PROXY = "10.0.0.5"


def meta(remote, xff=None):
    request = RequestFactory().get("/", REMOTE_ADDR=remote)
    if xff is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = xff
    return request


@pytest.mark.parametrize("trusted,remote,xff,expected", [
    ([], PROXY, "203.0.113.7", PROXY),                       # no proxy trusted: REMOTE_ADDR
    (["10.0.0.0/8"], PROXY, "203.0.113.7", "203.0.113.7"),   # the proxy's client
    (["10.0.0.0/8"], PROXY, "1.1.1.1, 203.0.113.7", "203.0.113.7"),  # left part is forged
    (["10.0.0.0/8"], PROXY, "203.0.113.7, 10.0.0.9", "203.0.113.7"),  # two trusted hops
    (["10.0.0.0/8"], "198.51.100.2", "203.0.113.7", "198.51.100.2"),  # not from a proxy
    (["10.0.0.0/8"], PROXY, None, PROXY),                    # no header
    (["10.0.0.0/8"], PROXY, "garbage", PROXY),               # not an address
    (["10.0.0.0/8"], PROXY, "10.0.0.7", "10.0.0.7"),         # only trusted hops: left-most
    (["2001:db8::/32"], "2001:db8::1", "2001:db8:1::1, 2a00::5", "2a00::5"),
])
def test_client_ip_is_the_rightmost_untrusted_forwarded_address(settings, trusted, remote,
                                                                  xff, expected):
    settings.FCORE_TRUSTED_PROXIES = trusted
    assert client_ip(meta(remote, xff)) == expected


def proxied(api, token, client_addr):
    """A request as the load balancer at PROXY forwards it for `client_addr`."""
    return api.http.get(PATH, HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=PROXY,
                        HTTP_X_FORWARDED_FOR=client_addr)


def test_bad_tokens_behind_a_trusted_proxy_lock_out_only_their_sender(api, settings):
    settings.FCORE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.FCORE_AUTH_FAILURE_LIMIT = 5
    for _ in range(5):
        assert proxied(api, "omega_bad.sig", "203.0.113.66").status_code == 401
    assert proxied(api, "omega_bad.sig", "203.0.113.66").status_code == 429
    assert proxied(api, api.token(), "198.51.100.1").status_code == 200


def test_an_address_sent_by_an_untrusted_peer_is_ignored(api, settings):
    settings.FCORE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.FCORE_AUTH_FAILURE_LIMIT = 5
    for n in range(5):  # a new forged X-Forwarded-For each time does not reset the count
        response = api.http.get(PATH, HTTP_AUTHORIZATION="Bearer omega_bad.sig",
                                REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}")
        assert response.status_code == 401
    again = api.http.get(PATH, HTTP_AUTHORIZATION="Bearer omega_bad.sig",
                         REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="1.2.3.99")
    assert again.status_code == 429


def test_a_failing_key_does_not_lock_out_other_keys_at_the_same_address(api, pt004, settings):
    """No trusted proxy configured: every client shares the proxy's address."""
    settings.FCORE_AUTH_FAILURE_LIMIT = 5
    for _ in range(5):
        assert api.get(PATH, token=api.token(secret="stale-secret")).status_code == 401
    assert api.get(PATH).status_code == 429  # that key, until the window passes
    other, secret = api_client_create(tenant=pt004, name="other", scopes=ALL_SCOPES.split(),
                                      actor="system:test")
    assert api.get(PATH, token=api.token(kid=other.kid, secret=secret)).status_code == 200


def test_tokens_naming_unknown_keys_count_against_the_address(api, settings):
    settings.FCORE_AUTH_FAILURE_LIMIT = 5
    for n in range(5):  # a made-up key id per attempt does not escape the limit
        assert api.get(PATH, token=api.token(kid=f"kid_made_up_{n}")).status_code == 401
    assert api.get(PATH, token="omega_bad.sig").status_code == 429


@pytest.fixture
def redis_caches(settings):
    """Two cache clients on the real Redis, as two web processes would have. Keys under a
    prefix of their own (the database may also be the test broker's: nothing is flushed);
    they expire with the failure window."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": REDIS_URL,
                                   "KEY_PREFIX": f"fc-test-{uuid.uuid4().hex}"}}
    first, second = caches.create_connection("default"), caches.create_connection("default")
    try:
        first.get("probe")
    except Exception:  # noqa: BLE001 - whatever the client raises, Redis is not there
        service_missing(f"Redis at {REDIS_URL}")
    yield first, second
    first.close()
    second.close()


def test_the_failure_count_is_shared_between_processes_through_redis(api, pt004, settings,
                                                                     redis_caches,
                                                                     monkeypatch):
    settings.FCORE_AUTH_FAILURE_LIMIT = 6
    first, second = redis_caches
    bad = api.token(secret="stale-secret")
    for process in (first, second, first, second, first, second):
        monkeypatch.setattr(auth, "cache", process)
        assert api.get(PATH, token=bad).status_code == 401
    for process in (first, second):
        monkeypatch.setattr(auth, "cache", process)
        assert api.get(PATH).status_code == 429
        other, secret = api_client_create(tenant=pt004, name=f"other-{id(process)}",
                                          scopes=["runs:read"], actor="system:test")
        token = api.token(kid=other.kid, secret=secret, scope="runs:read")
        assert api.get(PATH, token=token).status_code == 200


def test_deploy_check_warns_when_the_throttle_cache_is_per_process(settings):
    from fcore.checks import throttle_cache_shared

    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert [w.id for w in throttle_cache_shared(None)] == ["fcore.W001"]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": REDIS_URL}}
    assert throttle_cache_shared(None) == []
