"""Fixtures for the tool tests. Loopback only: name-server discovery never leaves the machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pyroplug.core import nsclient
from pyroplug.core.config import config
from tests.tools.support import Backend, free_port, start_backend


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Name-server discovery never leaves the machine (and never finds a developer's own name server)."""
    monkeypatch.setattr(config, "BROADCAST_ADDRS", "127.0.0.1")
    monkeypatch.setattr(config, "NS_BCPORT", free_port(socket.SOCK_DGRAM))
    monkeypatch.setattr(config, "NS_HOST", "127.0.0.1")
    monkeypatch.setattr(config, "NS_PORT", free_port())
    monkeypatch.setattr(nsclient, "_debian_loopback_alias", lambda: False)
    yield


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """A name server and a daemon hosting the test service (``http.service``, ``other.service``)."""
    b = start_backend()
    try:
        yield b
    finally:
        b.stop()
