"""The mixed-fleet example runs with one command, with either name server, and cleans up after itself."""

from __future__ import annotations

import sys

import pytest

from pyroplug.testing.interop import repo_root, run_peer

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("ns", ["pyroplug", "pyro4"])
def test_mixed_fleet_example(ns: str) -> None:
    done = run_peer([sys.executable, str(repo_root() / "examples" / "mixed_fleet" / "run.py"), "--ns", ns], timeout=90)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "done: all clients succeeded" in out
    for client in ("pyro4", "pyroplug"):
        assert f"[{client} client] name server PYRO:Pyro.NameServer@127.0.0.1:" in out
        assert f"[{client} client] quote for 3 widgets: {{'item': 'widget', 'total': 7.5, 'by': 'pyroplug " in out
        assert "'served_by': 'Pyro4 4.82'}" in out
        assert f"[{client} client] reserve 5 gadgets failed remotely: ValueError: only 2 gadget(s) left" in out
    assert "[pyro4 client] widgets left: 7" in out and "[pyroplug client] widgets left: 4" in out
