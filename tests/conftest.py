"""Shared fixtures: plugin managers that include the test-only memory transport, isolated config."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pyroplug.core import plugins


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _ipv6_loopback()
HAS_UNIX = hasattr(socket, "AF_UNIX")


@pytest.fixture(scope="session", autouse=True)
def memory_transport_registered() -> Iterator[None]:
    """Register the in-memory transport plugin (a custom transport written outside the kernel)."""
    from pyroplug.testing import memory_transport

    pm = plugins.make_plugin_manager()
    plugins.register_module(pm, memory_transport, "pyroplug-testing-memory")
    plugins.reset_plugins(pm)
    yield
    plugins.reset_plugins(None)
