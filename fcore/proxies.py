"""The client's address, read through the proxies the operator trusts.

`FCORE_TRUSTED_PROXIES` lists addresses and networks (CIDR) of the load balancers in front
of the web processes; empty (the default) means none: the address is REMOTE_ADDR. Only when
REMOTE_ADDR is itself trusted is `X-Forwarded-For` read, from the right: each trusted proxy
appends the address it received the request from, so the right-most entry that is not a
trusted proxy is the client. Everything left of it was written by the client and is never
believed. The API's failed-token throttle, its rate limit and the console's sign-in lockout
(django-axes) all ask here.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, networks) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(request) -> str:
    """The requesting client's address: REMOTE_ADDR, or behind trusted proxies the
    right-most X-Forwarded-For entry that is not one of them."""
    remote = request.META.get("REMOTE_ADDR", "")
    networks = _networks(tuple(settings.FCORE_TRUSTED_PROXIES))
    client = _address(remote)
    if not _trusted(client, networks):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for entry in reversed(forwarded.split(",")):
        hop = _address(entry)
        if hop is None:  # not written by a proxy of ours: stop at the last trusted hop
            break
        client = hop
        if not _trusted(hop, networks):
            break
    return str(client)
