"""Helpers of the feature tests: daemons of either server type running in background threads."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy

__all__ = ["SERVERTYPES", "Served", "serve", "wait_until"]

SERVERTYPES = ("thread", "multiplex")


class Served:
    """A daemon serving in a background thread, with helpers to make proxies for its objects."""

    def __init__(self, daemon: Daemon, thread: threading.Thread) -> None:
        self.daemon = daemon
        self.thread = thread

    def proxy(self, obj_or_id: Any, timeout: float = 10.0, **config_items: Any) -> Proxy:
        """A proxy (own config copy, call timeout) for a registered object or object id."""
        cfg = Config()
        for key, value in config_items.items():
            setattr(cfg, key, value)
        proxy = Proxy(self.daemon.uriFor(obj_or_id), config=cfg)
        proxy._pyroTimeout = timeout
        return proxy


@contextlib.contextmanager
def serve(
    servertype: str = "thread", daemon_class: type[Daemon] = Daemon, objects: dict[str, Any] | None = None,
    **config_items: Any,
) -> Iterator[Served]:
    """Run a daemon of ``servertype`` on 127.0.0.1 with ``objects`` (id -> object or class) registered."""
    cfg = Config()
    cfg.SERVERTYPE = servertype
    cfg.POLLTIMEOUT = 0.1
    for key, value in config_items.items():
        setattr(cfg, key, value)
    daemon = daemon_class(host="127.0.0.1", config=cfg)
    for object_id, obj in (objects or {}).items():
        daemon.register(obj, object_id)
    thread = threading.Thread(target=daemon.requestLoop, name=f"feature-daemon-{servertype}", daemon=True)
    thread.start()
    try:
        yield Served(daemon, thread)
    finally:
        daemon.shutdown()
        thread.join(10)
        daemon.close()


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` passes; its last truth value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(interval)
