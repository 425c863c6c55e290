"""Shared pieces of the fault tests: a real daemon per server type x transport, its services, liveness checks.

:func:`served` starts a pyroplug Daemon (thread or multiplex server, TCP on 127.0.0.1 or a unix
socket) in a background thread with a :class:`FaultService` registered as ``svc`` and a
:class:`PartlyExposed` class as ``partly``, and connects one proxy *before* the test makes its
fault (``Served.pre``). :meth:`Served.assert_serving` then proves the daemon still serves both
that earlier proxy and a brand-new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.expose import expose, oneway
from pyroplug.core.proxy import Proxy
from pyroplug.core.registry import get_registry
from pyroplug.core.serializer import Serializer
from pyroplug.core.uri import URI
from tests.e2e.rawwire import RawClient

__all__ = ["KINDS", "Fatal", "FaultService", "PartlyExposed", "Served", "Unprintable", "served"]

#: (server type, transport) pairs every fault is checked against
KINDS = [("thread", "tcp"), ("thread", "unix"), ("multiplex", "tcp"), ("multiplex", "unix")]


class Fatal(BaseException):
    """A BaseException that is neither Exception nor SystemExit/KeyboardInterrupt."""


class CustomError(Exception):
    """A user exception class the client does not know (travels as a class dict)."""


class Unprintable(Exception):
    """An exception whose own __str__ fails."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@expose  # all of it, so that it also serves with REQUIRE_EXPOSE=True
class FaultService:
    """Methods that misbehave in every way the fault tests need."""

    plain_attribute = "a plain class attribute: never remotely reachable"

    def __init__(self) -> None:
        self.oneway_done = threading.Event()
        self.oneway_runs = 0

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def echo(self, value: Any) -> Any:
        return value

    def slow(self, seconds: float, size: int = 0) -> Any:
        time.sleep(seconds)
        return "x" * size if size else seconds

    def fail(self, text: str = "boom") -> None:
        raise ValueError(text)

    def fail_key(self) -> None:
        raise KeyError("missing-key")

    def fail_custom(self) -> None:
        raise CustomError("custom failure")

    def fail_unserializable(self) -> None:
        raise ValueError("with a lock", threading.Lock())

    def fail_unprintable(self) -> None:
        raise Unprintable(threading.Lock())

    def unserializable_result(self) -> Any:
        return threading.Lock()

    def big_result(self, size: int) -> str:
        return "y" * size

    def exit(self, code: int = 3) -> None:
        raise SystemExit(code)

    def fatal(self) -> None:
        raise Fatal("fatal")

    @oneway
    def oneway_fail(self, text: str) -> None:
        self.oneway_runs += 1
        self.oneway_done.set()
        raise ValueError(text)

    @oneway
    def oneway_exit(self) -> None:
        self.oneway_runs += 1
        self.oneway_done.set()
        raise SystemExit(4)

    @property
    def readonly(self) -> str:
        return "fixed"

    @property
    def value(self) -> int:
        return 42

    @value.setter
    def value(self, value: int) -> None:
        pass

    def _private(self) -> str:
        return "secret"


class PartlyExposed:
    """The server chapter's partly exposed PyroService, for REQUIRE_EXPOSE=True."""

    value = 42  # not exposed

    def __dunder__(self) -> str:  # not private, but (as in Pyro4 4.82) without @expose not exposed either
        return "dunder"

    def _private(self) -> None:  # not exposed
        pass

    def hidden(self) -> str:  # not exposed: no @expose
        return "hidden"

    @expose
    def get_value(self) -> int:
        return self.value

    @property
    def secret(self) -> str:  # a property without @expose
        return "secret"

    @expose  # type: ignore[prop-decorator]
    @property
    def ro(self) -> str:  # exposed, read-only
        return "read-only"

    @expose  # type: ignore[prop-decorator]
    @property
    def attr(self) -> int:
        return self.value

    @expose
    @attr.setter
    def attr(self, value: int) -> None:
        self.value = value


@dataclass
class Served:
    """A running daemon for fault tests, with a proxy that connected before the fault."""

    daemon: Daemon
    config: Config
    servertype: str
    transport: str
    service: FaultService
    uri: URI
    address: Any
    ser: Serializer
    pre: Proxy
    _opened: list[Any] = field(default_factory=list)

    def proxy(self, obj: str = "svc", **overrides: Any) -> Proxy:
        """A new proxy (closed at the end of the test) for a registered object."""
        cfg = self.config.copy()
        cfg.SERIALIZER = "serpent"
        for key, value in overrides.items():
            setattr(cfg, key, value)
        p = Proxy(self.daemon.uriFor(obj), config=cfg)
        self._opened.append(p)
        return p

    def raw(self, timeout: float = 5.0) -> RawClient:
        """A raw socket client connected to the daemon (closed at the end of the test)."""
        client = RawClient(self.address, timeout)
        self._opened.append(client)
        return client

    def handshaken(self, timeout: float = 5.0) -> RawClient:
        """A raw client that completed the handshake (in serpent)."""
        client = self.raw(timeout)
        client.handshake(self.ser)
        return client

    def assert_serving(self) -> None:
        """Prove the daemon still serves: the proxy from before the fault, and a brand-new one."""
        assert self.pre.add(20, 22) == 42
        with self.proxy() as fresh:
            assert fresh.add(1, 2) == 3
            assert fresh.echo(["still", "serving"]) == ["still", "serving"]
        assert self.pre.echo("pre") == "pre"

    def worker_threads(self) -> int:
        """Live threads of this daemon's thread server (0 for multiplex)."""
        pool = getattr(self.daemon.transportServer, "pool", None)
        return sum(1 for w in pool.workers if w.is_alive()) if pool is not None else 0


@contextlib.contextmanager
def served(servertype: str, transport: str, **config_items: Any) -> Iterator[Served]:
    """A daemon in a background thread, as described in the module docstring; everything closed after."""
    cfg = Config()
    cfg.SERVERTYPE = servertype
    cfg.POLLTIMEOUT = 0.5
    cfg.THREADPOOL_SIZE = 16
    cfg.THREADPOOL_SIZE_MIN = 2
    for key, value in config_items.items():
        setattr(cfg, key, value)
    tmpdir = tempfile.mkdtemp(prefix="ppf-", dir="/tmp" if os.path.isdir("/tmp") else None)
    if transport == "unix":
        daemon = Daemon(unixsocket=os.path.join(tmpdir, "d.sock"), config=cfg)
    else:
        daemon = Daemon(host="127.0.0.1", config=cfg)
    service = FaultService()
    uri = daemon.register(service, "svc")
    daemon.register(PartlyExposed, "partly")
    thread = threading.Thread(target=daemon.requestLoop, name=f"faults-{servertype}-{transport}", daemon=True)
    thread.start()
    address = daemon.sock.getsockname()
    ser = get_registry().serializer("serpent")(cfg)
    pcfg = cfg.copy()
    pcfg.SERIALIZER = "serpent"
    pre = Proxy(uri, config=pcfg)
    h = Served(daemon, cfg, servertype, transport, service, uri, address, ser, pre)
    try:
        assert pre.add(1, 1) == 2  # connected before the fault
        yield h
    finally:
        for opened in [*h._opened, pre]:
            with contextlib.suppress(Exception):
                (opened._pyroRelease if isinstance(opened, Proxy) else opened.close)()
        daemon.shutdown()
        thread.join(10)
        daemon.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
