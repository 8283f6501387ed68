"""Client addresses behind proxies: forwarded headers count only when the peer is trusted."""

import contextlib

import httpx
import msgspec
import pytest

from service.proxies import client_address, parse_networks
from tests.conftest import served

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8:1::/48"])


@pytest.mark.parametrize(
    ("peer", "values", "expected"),
    [
        # An untrusted peer's header is ignored, whatever it says.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # A trusted peer: the rightmost untrusted hop; what the client wrote further left is ignored.
        ("10.0.0.5", ["1.1.1.1, 198.51.100.7"], "198.51.100.7"),
        # Several trusted hops (ingress behind a cloud balancer), across several header lines.
        ("10.0.0.5", ["6.6.6.6, 198.51.100.7", "10.1.2.3"], "198.51.100.7"),
        # Ports and IPv6 forms.
        ("10.0.0.5", ["198.51.100.7:5555"], "198.51.100.7"),
        ("2001:db8:1::2", ["[2001:db8:9::1]:443"], "2001:db8:9::1"),
        # Every hop trusted: the leftmost one.
        ("10.0.0.5", ["10.9.9.9, 10.0.0.1"], "10.9.9.9"),
        # Garbage from behind a trusted hop: stop at the last address known.
        ("10.0.0.5", ["unknown, 10.0.0.1"], "10.0.0.1"),
    ],
)
def test_x_forwarded_for(peer, values, expected):
    assert client_address(peer, values, TRUSTED, "x-forwarded-for") == expected


def test_forwarded_header():
    values = ['for=1.1.1.1, for="[2001:db8:9::1]:4711";proto=https;by=10.0.0.1', "For=10.0.0.2"]
    assert client_address("10.0.0.5", values, TRUSTED, "forwarded") == "2001:db8:9::1"
    assert client_address("10.0.0.5", ["for=_hidden"], TRUSTED, "forwarded") == "10.0.0.5"


def test_nothing_trusted_means_the_peer():
    assert client_address("10.0.0.5", ["198.51.100.7"], (), "x-forwarded-for") == "10.0.0.5"


@contextlib.asynccontextmanager
async def _served(settings):
    async with served(settings) as base, httpx.AsyncClient(base_url=base) as http:
        yield http


async def _login_statuses(http, forwarded_for, attempts):
    statuses = []
    for i in range(attempts):
        response = await http.post(
            "/api/v1/auth/login",
            json={"username": f"nobody-{forwarded_for}-{i}", "password": "wrong-password"},
            headers={"X-Forwarded-For": forwarded_for},
        )
        statuses.append(response.status_code)
    return statuses


async def test_login_limit_counts_forwarded_clients_only_behind_a_trusted_proxy(settings):
    limited = msgspec.structs.replace(settings, login_attempts_per_address_per_minute=3)

    # The peer (127.0.0.1) is the trusted balancer: each forwarded client has its own window.
    async with _served(msgspec.structs.replace(limited, trusted_proxies=["127.0.0.0/8"])) as http:
        assert await _login_statuses(http, "198.51.100.1", 4) == [401, 401, 401, 429]
        assert await _login_statuses(http, "198.51.100.2", 1) == [401]

    # Nobody trusted: the header is the client's own claim and is ignored (else a client could
    # dodge the limit by inventing addresses); all attempts count against 127.0.0.1.
    untrusted = msgspec.structs.replace(limited, redis_prefix=settings.redis_prefix + "untrusted:")
    async with _served(untrusted) as http:
        assert await _login_statuses(http, "198.51.100.3", 3) == [401, 401, 401]
        assert await _login_statuses(http, "198.51.100.4", 1) == [429]
