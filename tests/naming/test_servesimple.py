"""Daemon.serveSimple with ns=True registers its named objects in the name server (found by locateNS)."""

from __future__ import annotations

import threading
import time

import pytest

from pyroplug import errors
from pyroplug.core.config import config
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy
from pyroplug.testing.services import Calculator, Single
from tests.naming.conftest import RunningNS, free_port


def _serve(daemon: Daemon, objects: dict, ns: bool, failures: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            Daemon.serveSimple(objects, daemon=daemon, ns=ns, verbose=True)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_serve_simple_registers_in_name_server(ns_server: RunningNS, capsys: pytest.CaptureFixture[str]) -> None:
    daemon = Daemon(host="127.0.0.1")
    calc = Calculator()
    failures: list[BaseException] = []
    t = _serve(daemon, {calc: "simple.calc", Single: "simple.single", Calculator(): None}, True, failures)
    try:
        with Proxy(ns_server.uri) as ns:
            deadline = time.monotonic() + 10
            while len(ns.list(prefix="simple.")) < 2 and time.monotonic() < deadline and not failures:
                time.sleep(0.05)
            names = ns.list(prefix="simple.")
        assert sorted(names) == ["simple.calc", "simple.single"]
        assert names["simple.calc"].startswith("PYRO:obj_") and "@127.0.0.1:" in names["simple.calc"]
        with Proxy(f"PYRONAME:simple.calc@127.0.0.1:{ns_server.uri.port}") as p:
            assert p.add(20, 22) == 42
        with Proxy("PYRONAME:simple.single") as p:  # located through NS_HOST/NS_PORT
            assert p.instance_id() == p.instance_id()
        assert len(daemon.objectsById) == 4  # the daemon object and the three registered ones
    finally:
        daemon.shutdown()
        t.join(10)
    assert not failures
    out = capsys.readouterr().out
    assert "name = simple.calc" in out and "Pyro daemon running." in out and "uri = PYRO:obj_" in out


def test_serve_simple_without_name_server_uses_names_as_ids(capsys: pytest.CaptureFixture[str]) -> None:
    daemon = Daemon(host="127.0.0.1")
    failures: list[BaseException] = []
    t = _serve(daemon, {Calculator(): "local.calc"}, False, failures)
    try:
        deadline = time.monotonic() + 10
        while "local.calc" not in daemon.objectsById and time.monotonic() < deadline:
            time.sleep(0.05)
        with Proxy(daemon.uriFor("local.calc")) as p:
            assert p.add(1, 1) == 2
    finally:
        daemon.shutdown()
        t.join(10)
    assert not failures


def test_serve_simple_without_reachable_name_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "NS_PORT", free_port())
    daemon = Daemon(host="127.0.0.1")
    with pytest.raises(errors.NamingError, match="Failed to locate the nameserver"):
        Daemon.serveSimple({Calculator(): "x"}, daemon=daemon, ns=True, verbose=False)
    assert daemon._closed
