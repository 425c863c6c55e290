"""AutoCleaner: unreachable registrations disappear after max_unreachable_time; reachable ones stay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pyroplug.core.config import config
from pyroplug.core.constants import NAMESERVER_NAME
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy
from pyroplug.naming import AutoCleaner, NameServer, NameServerDaemon
from pyroplug.testing.services import Calculator
from tests.naming.conftest import free_port, run_ns


@pytest.fixture
def fast_cleaner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AutoCleaner, "override_autoclean_min", True)
    monkeypatch.setattr(AutoCleaner, "loop_delay", 0.05)
    monkeypatch.setattr(AutoCleaner, "max_unreachable_time", 0.6)


@pytest.fixture
def live_service() -> Iterator[str]:
    daemon = Daemon(host="127.0.0.1")
    uri = daemon.register(Calculator(), "calc")
    t = threading.Thread(target=daemon.requestLoop, daemon=True)
    t.start()
    yield str(uri)
    daemon.shutdown()
    t.join(10)


def test_interval_must_be_at_least_three_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="cannot be smaller than 3"):
        AutoCleaner(NameServer(), 1.0)
    cfg = config.copy()
    cfg.NS_AUTOCLEAN = 2.5
    with pytest.raises(ValueError, match="NS_AUTOCLEAN cannot be smaller than 3"):
        NameServerDaemon("127.0.0.1", 0, config=cfg)
    with pytest.raises(ValueError, match="positive"):
        AutoCleaner(NameServer(), 0)
    cleaner = AutoCleaner(NameServer(), 3)
    assert cleaner.interval == 3.0 and not cleaner.is_alive()


def test_clean_once_timing_and_rules(fast_cleaner: None, live_service: str) -> None:
    ns = NameServer()
    dead = f"PYRO:gone@127.0.0.1:{free_port()}"
    ns.register(NAMESERVER_NAME, dead)  # never probed or removed
    ns.register("Pyro.Daemon", dead)
    ns.register("live", live_service)
    ns.register("dead", dead)
    ns.register("dead.unix", "PYRO:x@./u:/nonexistent/socket/path")
    ns.register("alias", "PYRONAME:live")  # not a PYRO uri: left alone
    cleaner = AutoCleaner(ns, 0.1)
    assert cleaner.clean_once() == []
    assert set(cleaner.unreachable) == {"dead", "dead.unix"}
    time.sleep(0.7)
    ns.register("dead.unix", live_service)  # re-registered for a reachable uri: survives
    assert cleaner.clean_once() == ["dead"]
    assert sorted(ns.list()) == ["Pyro.Daemon", NAMESERVER_NAME, "alias", "dead.unix", "live"]
    assert cleaner.unreachable == {}


def test_name_changed_between_probe_and_removal_is_kept(fast_cleaner: None, live_service: str) -> None:
    ns = NameServer()
    dead = f"PYRO:gone@127.0.0.1:{free_port()}"
    ns.register("moving", dead)
    cleaner = AutoCleaner(ns, 0.1)
    assert cleaner._remove_if_unchanged("moving", "PYRO:other@127.0.0.1:1") is False
    assert cleaner._remove_if_unchanged("missing", dead) is False
    assert cleaner._remove_if_unchanged("moving", dead) is True


def test_cleaner_thread_in_name_server(fast_cleaner: None, live_service: str) -> None:
    cfg = config.copy()
    cfg.NS_AUTOCLEAN = 0.1
    running = run_ns("127.0.0.1", 0, cfg)
    try:
        cleaner = running.daemon.cleaner_thread
        assert cleaner is not None and cleaner.is_alive()
        with Proxy(running.uri) as ns:
            ns.register("live", live_service)
            ns.register("dead", f"PYRO:gone@127.0.0.1:{free_port()}")
            deadline = time.monotonic() + 10
            while "dead" in ns.list() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sorted(ns.list()) == [NAMESERVER_NAME, "live"]
    finally:
        running.stop()
    assert running.daemon.cleaner_thread is None and not cleaner.is_alive()


def test_no_cleaner_by_default(ns_server: object) -> None:
    assert ns_server.daemon.cleaner_thread is None  # type: ignore[attr-defined]
