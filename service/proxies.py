"""The client's address behind load balancers: forwarded headers, believed only from trusted proxies.

Behind a load balancer every connection comes from the balancer, so the per-address
login limit would count all staff as one client. The balancer appends the address it
saw to ``X-Forwarded-For`` (or RFC 7239 ``Forwarded``); anything to the left of that was
written by the client and may be forged. So the header is read only when the peer is a
trusted proxy (``QSITE_TRUSTED_PROXIES``), from the right, skipping trusted hops: the
first untrusted address is the client.

The middleware rewrites the ASGI scope's ``client`` once, so every reader
(``request.client``, logs, limits) sees the same address. uvicorn's own proxy-header
handling is switched off in ``serve`` so that there is one rule, this one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

from litestar.types import ASGIApp, Receive, Scope, Send

from service.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def _address(text: str) -> IPAddress | None:
    """An address from one hop: ``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``, ``2001:db8::1``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None  # "unknown", an obfuscated identifier (RFC 7239 "_hidden"), garbage
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def _hops(values: list[str], header: Literal["x-forwarded-for", "forwarded"]) -> list[str]:
    """The hops of every line of the header, oldest (client side) first."""
    hops: list[str] = []
    for value in values:
        for element in value.split(","):
            if header == "x-forwarded-for":
                hops.append(element)
                continue
            # Forwarded: for=192.0.2.60;proto=https;by=203.0.113.43
            pairs = (pair.split("=", 1) for pair in element.split(";") if "=" in pair)
            hops.append(next((v for k, v in pairs if k.strip().lower() == "for"), ""))
    return hops


def client_address(
    peer: str, header_values: list[str], trusted: tuple[Network, ...], header: Literal["x-forwarded-for", "forwarded"]
) -> str:
    """The client's address: the peer itself unless the peer is a trusted proxy."""
    peer_address = _address(peer)
    if not trusted or peer_address is None or not any(peer_address in net for net in trusted):
        return peer
    client = str(peer_address)
    for hop in reversed(_hops(header_values, header)):
        address = _address(hop)
        if address is None:
            break  # a trusted proxy passed on something unreadable: stop at the last hop we know
        client = str(address)
        if not any(address in net for net in trusted):
            break
    return client


class TrustedProxiesMiddleware:
    """Sets ``scope["client"]`` to the forwarded client address when the peer is a trusted proxy."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = parse_networks(settings.trusted_proxies)
        self.header = settings.forwarded_header
        self.header_bytes = settings.forwarded_header.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") if scope["type"] in ("http", "websocket") else None
        if self.trusted and client:
            peer_host, peer_port = client
            values = [v.decode("latin-1") for k, v in scope["headers"] if k == self.header_bytes]
            host = client_address(peer_host, values, self.trusted, self.header) if values else peer_host
            if host != peer_host:
                scope["client"] = (host, peer_port)
        await self.app(scope, receive, send)
