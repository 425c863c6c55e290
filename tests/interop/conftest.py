"""Fixtures for the interop suite: stock Pyro4 4.82 and pyroplug peers in subprocesses.

Module-scoped peers (started once per test module, always stopped):

- ``daemon_peers``: ``peers/daemon.py`` for both flavors, accepting every serializer, on 127.0.0.1 and
  on a unix socket; ``daemon_peers[flavor].values`` maps ``plain custom strict unix`` to service URIs.
- ``drivers``: ``peers/driver.py`` client peers for both flavors (``Pyro4`` = stock Pyro4 or pyroplug).

``cell`` is parametrized over every (client flavor, daemon flavor) pair, so each test runs the same
Pyro4 code as pyro4->pyroplug and pyroplug->pyro4 (the interop directions), pyroplug->pyroplug, and
pyro4->pyro4: the reference, which proves that the expectation written in the test is stock Pyro4's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyroplug.testing.interop import Driver, Peer
from tests.interop.support import CELLS, FLAVORS, Cell, start_daemon_peer

pytest.importorskip("Pyro4", minversion="4.82", reason="the interop suite needs stock Pyro4 4.82 (pip install Pyro4==4.82)")


@pytest.fixture(scope="module")
def daemon_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Peer]]:
    """Both daemon peers, accepting all six serializers."""
    tmp = tmp_path_factory.mktemp("daemons")
    peers: dict[str, Peer] = {}
    try:
        for flavor in FLAVORS:
            peers[flavor] = start_daemon_peer(flavor, tmp)
        yield peers
    finally:
        for p in peers.values():
            p.stop()


@pytest.fixture(scope="module")
def drivers() -> Iterator[dict[str, Driver]]:
    """Both client peers (each started on first use, restarted if it dies)."""
    ds = {flavor: Driver(flavor) for flavor in FLAVORS}
    try:
        yield ds
    finally:
        for d in ds.values():
            d.close()


@pytest.fixture(params=CELLS, ids=[f"{c}->{d}" for c, d in CELLS])
def cell(request: pytest.FixtureRequest, daemon_peers: dict[str, Peer], drivers: dict[str, Driver]) -> Cell:
    """One (client flavor, daemon flavor) pair; every test using it runs four times."""
    client, daemon = request.param
    return Cell(client, daemon, drivers[client], daemon_peers[daemon].values)
