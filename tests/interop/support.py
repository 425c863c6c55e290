"""Shared helpers of the interop suite: peer starters, the client/daemon Cell and expectation helpers."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pyroplug.testing.interop import Driver, Peer, peers_dir, short_socket_path

__all__ = [
    "ALL_ACCEPTED",
    "CELLS",
    "FLAVORS",
    "SERIALIZERS",
    "Cell",
    "load_peer_module",
    "short",
    "start_daemon_peer",
    "type_tree",
]

FLAVORS = ("pyro4", "pyroplug")
SERIALIZERS = ("serpent", "json", "marshal", "msgpack", "pickle", "dill")
ALL_ACCEPTED = {"PYRO_SERIALIZERS_ACCEPTED": ",".join(SERIALIZERS)}
#: (client flavor, daemon flavor): the two interop directions, pyroplug alone, and the stock reference
CELLS = (("pyro4", "pyroplug"), ("pyroplug", "pyro4"), ("pyroplug", "pyroplug"), ("pyro4", "pyro4"))


def load_peer_module(name: str) -> ModuleType:
    """Import ``tests/interop/peers/<name>.py`` (the peers are scripts, not a package)."""
    key = f"interop_peer_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, peers_dir() / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def type_tree(value: Any) -> Any:
    """The peers' description of how a value arrived (``"type:repr"`` leaves), to build expected values."""
    return load_peer_module("service").type_tree(value)


def start_daemon_peer(
    flavor: str, tmp_dir: str | Path, env: dict[str, str] | None = None, extra: Sequence[str] = ()
) -> Peer:
    """``peers/daemon.py`` for ``flavor`` on 127.0.0.1 plus a unix socket in ``tmp_dir``; waits for READY."""
    sock = short_socket_path(tmp_dir, f"{flavor}.sock")
    argv = [sys.executable, str(peers_dir() / "daemon.py"), "--flavor", flavor, "--host", "127.0.0.1",
            "--unixsocket", sock, *extra]
    return Peer(argv, env={**ALL_ACCEPTED, **(env or {})}, name=f"daemon[{flavor}]")


@dataclass
class Cell:
    """One client flavor talking to one daemon flavor, through the client's driver peer."""

    client: str
    daemon: str
    driver: Driver
    uris: dict[str, str]

    def run(self, code: str, **variables: Any) -> Any:
        """Run a Pyro4 code snippet in the client peer (``uri`` defaults to the plain service)."""
        variables.setdefault("uri", self.uris["plain"])
        return self.driver.run(code, **variables)

    @property
    def reference(self) -> bool:
        """True for the stock-Pyro4-only cell, which validates the expectations written in the tests."""
        return self.client == self.daemon == "pyro4"

    def location(self, name: str = "plain") -> str:
        """The ``host:port`` (or ``./u:path``) of one of the daemons."""
        return self.uris[name].partition("@")[2]

    def __str__(self) -> str:
        return f"{self.client}->{self.daemon}"


def short(exc_type: str) -> str:
    """``Pyro4.errors.SerializeError`` or ``pyroplug.core.errors.SerializeError`` -> ``SerializeError``."""
    return exc_type.rpartition(".")[2]
