"""The multiplex server's re-entrant calls: edge cases of a call that waits on a remote reply."""

from __future__ import annotations

import threading
import time
from typing import Any

from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.proxy import Proxy
from pyroplug.plugins.servers.multiplex import MultiplexServer
from tests.features.support import serve, wait_until


@expose
class Hub:
    """Calls its listener, which may call back in."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def ask(self, listener: Any, n: int) -> Any:
        self.events.append(f"ask {n}")
        return listener.answer(n)

    def nested(self, n: int) -> int:
        self.events.append(f"nested {n}")
        return n + 100

    def notify_all(self, listener: Any, count: int) -> int:
        for i in range(count):
            listener.notified(i)  # oneway: never yields the loop
        return count


@expose
class SlowListener:
    """Answers after a delay, calling the hub back first (its own proxy)."""

    def __init__(self, hub_uri: Any, delay: float) -> None:
        self.hub_uri = hub_uri
        self.delay = delay
        self.notes: list[int] = []

    def answer(self, n: int) -> int:
        with Proxy(self.hub_uri) as hub:
            hub._pyroTimeout = 10
            value = hub.nested(n)
        time.sleep(self.delay)
        return value

    @oneway
    def notified(self, i: int) -> None:
        self.notes.append(i)


def test_waiting_call_survives_commtimeout_housekeeping() -> None:
    """While a call waits for its callback, helpers run housekeeping: its idle-looking connection stays."""
    hub = Hub()
    with serve("multiplex", objects={"hub": hub}, COMMTIMEOUT=0.3) as srv:
        listener = SlowListener(srv.daemon.uriFor("hub"), delay=0.9)
        with serve("thread", objects={"listener": listener}), srv.proxy("hub") as p:
            assert p.ask(listener, 1) == 101
            assert hub.events == ["ask 1", "nested 1"]


def test_oneway_callbacks_from_a_multiplex_call() -> None:
    hub = Hub()
    with serve("multiplex", objects={"hub": hub}) as srv:
        listener = SlowListener(srv.daemon.uriFor("hub"), delay=0)
        with serve("thread", objects={"listener": listener}), srv.proxy("hub") as p:
            assert p.notify_all(listener, 50) == 50
            assert wait_until(lambda: sorted(listener.notes) == list(range(50)))


def test_shutdown_while_a_call_waits() -> None:
    hub = Hub()
    with serve("multiplex", objects={"hub": hub}) as srv:
        listener = SlowListener(srv.daemon.uriFor("hub"), delay=0.4)
        with serve("thread", objects={"listener": listener}), srv.proxy("hub") as p:
            results: list[Any] = []
            caller = threading.Thread(target=lambda: results.append(p.ask(listener, 2)))
            caller.start()
            assert wait_until(lambda: "nested 2" in hub.events)
            srv.daemon.shutdown()
            caller.join(5)
            srv.thread.join(5)
            assert results == [102], "the waiting call completes"
            assert not srv.thread.is_alive(), "then the request loop returns"


def test_combined_daemons_share_the_reentrancy() -> None:
    """A call on a combined daemon waits; the callback calls the main daemon, served meanwhile."""
    cfg = Config()
    cfg.SERVERTYPE = "multiplex"
    cfg.POLLTIMEOUT = 0.1
    main, extra = Daemon(host="127.0.0.1", config=cfg), Daemon(host="127.0.0.1", config=cfg)
    hub_main, hub_extra = Hub(), Hub()
    main.register(hub_main, "hub")
    extra.register(hub_extra, "hub")
    main.combine(extra)
    assert isinstance(main.transportServer, MultiplexServer)
    loop = threading.Thread(target=main.requestLoop, daemon=True)
    loop.start()
    try:
        listener = SlowListener(main.uriFor("hub"), delay=0)
        with serve("thread", objects={"listener": listener}), Proxy(extra.uriFor("hub")) as p:
            p._pyroTimeout = 10
            assert p.ask(listener, 3) == 103
        assert hub_extra.events == ["ask 3"] and hub_main.events == ["nested 3"]
    finally:
        main.shutdown()
        loop.join(5)
        extra.close()


def test_external_event_loop_with_reentrant_call() -> None:
    """daemon.events() driven by a foreign select loop: a waiting call still gets its callback served."""
    import select

    cfg = Config()
    cfg.SERVERTYPE = "multiplex"
    daemon = Daemon(host="127.0.0.1", config=cfg)
    hub = Hub()
    daemon.register(hub, "hub")
    stop = threading.Event()

    def foreign_loop() -> None:
        while not stop.is_set():
            readable, _, _ = select.select(daemon.sockets, [], [], 0.05)
            if readable:
                daemon.events(readable)

    loop = threading.Thread(target=foreign_loop, daemon=True)
    loop.start()
    try:
        listener = SlowListener(daemon.uriFor("hub"), delay=0)
        with serve("thread", objects={"listener": listener}), Proxy(daemon.uriFor("hub")) as p:
            p._pyroTimeout = 10
            assert p.ask(listener, 4) == 104
            assert p.nested(5) == 105
    finally:
        stop.set()
        loop.join(5)
        daemon.close()
