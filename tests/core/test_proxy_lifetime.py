"""A proxy dropped without release closes its connection at once (no reference cycle through its methods)."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from pyroplug import errors
from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy


class Service:
    def add(self, a: int, b: int) -> int:
        return a + b


class CountingDaemon(Daemon):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.disconnects = threading.Event()

    def clientDisconnect(self, conn: object) -> None:  # noqa: N802
        self.disconnects.set()


def test_dropped_proxy_closes_its_connection_without_gc() -> None:
    daemon = CountingDaemon(host="127.0.0.1", config=Config())
    uri = daemon.register(Service(), "svc")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    gc.disable()
    try:
        proxy = Proxy(uri)
        assert proxy.add(1, 2) == 3
        assert proxy.add(2, 3) == 5  # the cached (weak) method
        assert Proxy(uri).add(4, 5) == 9  # a temporary proxy stays alive for its first call
        del proxy
        assert daemon.disconnects.wait(5)
    finally:
        gc.enable()
        daemon.shutdown()
        thread.join(5)


def test_cached_method_of_a_vanished_proxy_says_so() -> None:
    with Daemon(host="127.0.0.1", config=Config()) as daemon:
        uri = daemon.register(Service(), "svc")
        thread = threading.Thread(target=daemon.requestLoop, daemon=True)
        thread.start()
        proxy = Proxy(uri)
        assert proxy.add(1, 1) == 2
        method = proxy.add  # the cached form
        del proxy
        time.sleep(0.05)
        with pytest.raises(errors.PyroError, match="keep a reference"):
            method(1, 2)
        assert "no longer exists" in repr(method)
        daemon.shutdown()
        thread.join(5)
