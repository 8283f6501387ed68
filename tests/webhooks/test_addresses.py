"""The webhook address filter: only globally routable unicast, IPv6 transition forms unwrapped.

No database: ``resolve_target`` is called directly on literal addresses (and the
numeric host spellings the C resolver accepts), so no DNS is involved.
"""

import ipaddress

import pytest

from service.errors import InvalidInput
from service.settings import load_settings
from service.webhooks import service as webhooks

SETTINGS = load_settings({}, env="test", database_url="postgresql://unused", redis_url="redis://unused")

REFUSED_HOSTS = [
    # the transition forms
    "[::ffff:0:7f00:1]",  # IPv4-translated (SIIT) loopback
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of the metadata address
    "[64:ff9b::7f00:1]",
    "[64:ff9b::a00:1]",
    "[64:ff9b:1:7f00:0:100::]",  # RFC 8215 local-use NAT64, /48 layout, of 127.0.0.1
    "[64:ff9b:1::1]",
    "[2002:7f00:1::1]",  # 6to4 of loopback
    "[2002:a9fe:a9fe::1]",
    "[2002:c0a8:1::1]",
    "[2001::1]",  # Teredo
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo, client 192.0.2.45
    "[fec0::1]",  # site-local
    "[fed0::1]",
    "[::7f00:1]",  # IPv4-compatible
    "[::a9fe:a9fe]",
    "[::]",
    # the earlier forms: loopback, private, metadata, reserved, IPv4 spellings
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "0177.0.0.1",
    "0.0.0.0",
    "localhost",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:a9fe:a9fe]",
    "169.254.169.254",
    "2852039166",
    "[fe80::1]",
    "[fc00::1]",
    "[fd00:ec2::254]",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.10",
    "100.64.0.1",
    "192.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "224.0.0.1",
    "[ff02::1]",
    "[2001:db8::1]",
    "[100::1]",
]
ACCEPTED_HOSTS = ["8.8.8.8", "[2606:4700:4700::1111]", "[64:ff9b::808:808]", "[2002:808:808::1]", "[::ffff:8.8.8.8]"]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_non_global_addresses_are_refused(host):
    with pytest.raises(InvalidInput) as refused:
        await webhooks.resolve_target(f"https://{host}:8443/hook", SETTINGS)
    assert refused.value.code == "webhook_url_refused"


@pytest.mark.parametrize("host", ACCEPTED_HOSTS)
async def test_global_unicast_addresses_are_accepted_and_pinned(host):
    target = await webhooks.resolve_target(f"https://{host}/hook", SETTINGS)
    address = ipaddress.ip_address(host.strip("[]"))
    assert target.url == f"https://{host if address.version == 4 else f'[{address}]'}/hook"


def test_embedded_ipv4_unwraps_each_form():
    unwrap = {
        "::ffff:0:7f00:1": "127.0.0.1",
        "64:ff9b::a9fe:a9fe": "169.254.169.254",
        "64:ff9b:1:7f00:0:100::": "127.0.0.1",
        "2002:7f00:1::1": "127.0.0.1",
        "::7f00:1": "127.0.0.1",
        "::ffff:a00:1": "10.0.0.1",
    }
    for ipv6, ipv4 in unwrap.items():
        assert webhooks.embedded_ipv4(ipaddress.IPv6Address(ipv6)) == [ipaddress.IPv4Address(ipv4)]
    assert webhooks.embedded_ipv4(ipaddress.IPv6Address("2606:4700::1111")) is None
