"""Name-server fixtures. Every test here keeps traffic on loopback: broadcasts go to 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyroplug.core import nsclient
from pyroplug.core.config import Config, config
from pyroplug.core.uri import URI
from pyroplug.naming import NameServerDaemon, startNS

PYTHON = sys.executable


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Discovery in tests never leaves the machine: loopback NS_HOST, unicast 'broadcasts' to 127.0.0.1."""
    monkeypatch.setattr(config, "BROADCAST_ADDRS", "127.0.0.1")
    monkeypatch.setattr(config, "NS_BCPORT", free_port(socket.SOCK_DGRAM))
    monkeypatch.setattr(config, "NS_HOST", "127.0.0.1")
    monkeypatch.setattr(config, "NS_PORT", free_port())
    monkeypatch.setattr(config, "NS_AUTOCLEAN", 0.0)
    monkeypatch.setattr(nsclient, "_debian_loopback_alias", lambda: False)
    yield


def test_env(**extra: Any) -> dict[str, str]:
    """Environment for subprocesses: the global config's discovery settings (loopback only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    env.update({
        "PYRO_BROADCAST_ADDRS": config.BROADCAST_ADDRS,
        "PYRO_NS_BCPORT": str(config.NS_BCPORT),
        "PYRO_NS_HOST": config.NS_HOST,
        "PYRO_NS_PORT": str(config.NS_PORT),
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


test_env.__test__ = False  # type: ignore[attr-defined]


@dataclass
class RunningNS:
    """A name server serving in a background thread."""

    uri: URI
    daemon: NameServerDaemon
    thread: threading.Thread

    def stop(self) -> None:
        self.daemon.shutdown()
        self.thread.join(10)
        self.daemon.close()


def run_ns(host: str | None = "127.0.0.1", port: int = 0, cfg: Config | None = None, **kwargs: Any) -> RunningNS:
    """Start a name server (no broadcast responder) in a thread."""
    cfg = cfg or config.copy()
    cfg.POLLTIMEOUT = 0.5
    cfg.SERIALIZERS_ACCEPTED = {"serpent", "json", "marshal", "msgpack"}
    uri, daemon, _bc = startNS(host, port, enableBroadcast=False, config=cfg, **kwargs)
    thread = threading.Thread(target=daemon.requestLoop, name="test-ns", daemon=True)
    thread.start()
    return RunningNS(uri, daemon, thread)


@pytest.fixture
def ns_server() -> Iterator[RunningNS]:
    """A memory-storage name server on 127.0.0.1 at the (test) NS_PORT."""
    running = run_ns("127.0.0.1", config.NS_PORT)
    yield running
    running.stop()
