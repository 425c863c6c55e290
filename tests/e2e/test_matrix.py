"""The end-to-end conformance suite over every server type x transport x safe serializer (real sockets)."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator

import pytest

from pyroplug.core.plugins import make_plugin_manager
from pyroplug.core.registry import Registry
from pyroplug.testing.endtoend import DaemonProxyConformance, Stack, running_stack
from tests.conftest import HAS_IPV6, HAS_UNIX

_registry = Registry.build(make_plugin_manager())
SERVERTYPES = sorted(_registry.server_types)
SAFE_SERIALIZERS = sorted(name for name, cls in _registry.serializers.items() if cls.safe)
TRANSPORTS = ["tcp", "tcp6", "u", "mem"]


@pytest.fixture(
    scope="class",
    params=[
        pytest.param((s, t, z), id=f"{s}-{t}-{z}")
        for s, t, z in itertools.product(SERVERTYPES, TRANSPORTS, SAFE_SERIALIZERS)
    ],
)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    servertype, transport, serializer = request.param
    if transport == "tcp6" and not HAS_IPV6:
        pytest.skip("IPv6 loopback (::1) is not available on this machine")
    if transport == "u" and not HAS_UNIX:
        pytest.skip("unix sockets are unavailable on this platform")
    with tempfile.TemporaryDirectory() as tmp:
        if transport == "tcp":
            ctx = running_stack(servertype, serializer, "tcp", host="127.0.0.1")
        elif transport == "tcp6":
            ctx = running_stack(servertype, serializer, "tcp", host="::1")
        elif transport == "u":
            ctx = running_stack(servertype, serializer, "u", address=os.path.join(tmp, "daemon.sock"))
        else:
            ctx = running_stack(servertype, serializer, "mem", address=f"matrix-{servertype}-{serializer}")
        with ctx as running:
            yield running


class TestMatrix(DaemonProxyConformance):
    """Runs every conformance test against the parametrized stack."""
