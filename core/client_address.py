"""Who sent a request: the peer's address, or, when the peer is one of
PROMPTRAMP_TRUSTED_PROXIES, the address its ``X-Forwarded-For`` names (the rightmost one that is
not itself a trusted proxy: what comes before it was written by the client and may be forged)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies() -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in settings.PROMPTRAMP_TRUSTED_PROXIES)


def is_trusted_proxy(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str, forwarded_for: str) -> str:
    """The client's address, given the peer's and the request's ``X-Forwarded-For``."""
    proxies = trusted_proxies()
    if not proxies or not forwarded_for or not is_trusted_proxy(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop, proxies):
            return hop
    return hops[0] if hops else peer


def client_address_of(meta: Mapping[str, Any]) -> str:
    """The client's address of a Django request (``request.META``)."""
    return client_address(meta.get("REMOTE_ADDR", ""), meta.get("HTTP_X_FORWARDED_FOR", ""))
