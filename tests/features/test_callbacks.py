"""Callbacks: a client's own daemon hosts an object the server calls back, re-entrant calls included.

The re-entrant case (server method -> client callback -> server method) deadlocks Pyro4's multiplex
server; pyroplug's multiplex server lets the waiting call yield (see pyroplug/plugins/servers/multiplex.py)
while independent calls still run one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import pyroplug
from pyroplug import errors
from pyroplug.core.context import current_context
from pyroplug.core.expose import callback, expose
from pyroplug.core.proxy import Proxy
from tests.features.support import SERVERTYPES, serve, wait_until

CLIENT_TYPES = pytest.mark.parametrize("client_type", SERVERTYPES)


@expose
class Server:
    """Calls back into the client, and is called back into."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def ask(self, listener: Any, n: int) -> Any:
        """Call the client's listener (a proxy, autoproxied from the client's daemon)."""
        self.events.append(f"ask {n} start")
        try:
            return listener.answer(n)
        finally:
            self.events.append(f"ask {n} end")

    def nested(self, n: int) -> int:
        self.events.append(f"nested {n}")
        return n * 10

    def ping_pong(self, listener: Any, depth: int) -> list[str]:
        """Bounce between server and client ``depth`` times (each level a nested call)."""
        if depth == 0:
            return ["bottom"]
        return ["server", *listener.pong(depth - 1)]

    def locked_ask(self, listener: Any, n: int) -> Any:
        """Hold a lock across the callback (independent calls that need it must wait their turn)."""
        with self.lock:
            return listener.answer(n)

    def needs_lock(self) -> str:
        with self.lock:
            self.events.append("needs_lock")
            return "locked ok"

    def mark(self, what: str) -> str:
        self.events.append(what)
        return what

    def trigger_failing_callback(self, listener: Any) -> str:
        try:
            listener.fails()
        except KeyError as exc:
            return f"server got {exc!r}"
        return "no error"


@expose
class Listener:
    """The client-side object; calls back into the server with its own proxy."""

    def __init__(self, server_uri: Any, delay: float = 0.0) -> None:
        self.server_uri = server_uri
        self.delay = delay
        self.answered: list[int] = []

    def answer(self, n: int) -> int:
        time.sleep(self.delay)
        self.answered.append(n)
        with Proxy(self.server_uri) as server:
            server._pyroTimeout = 10
            return server.nested(n) + 1

    def pong(self, depth: int) -> list[str]:
        with Proxy(self.server_uri) as server:
            server._pyroTimeout = 10
            return ["client", *server.ping_pong(self, depth)]

    @callback
    def fails(self) -> None:
        raise KeyError("callback failed")

    def plain(self) -> str:
        return "plain"


@CLIENT_TYPES
def test_callback_and_reentrant_call(servertype: str, client_type: str) -> None:
    server = Server()
    with serve(servertype, objects={"server": server}) as srv:
        listener = Listener(srv.daemon.uriFor("server"))
        with serve(client_type, objects={"listener": listener}), srv.proxy("server", timeout=10) as p:
            start = time.monotonic()
            assert p.ask(listener, 4) == 41, "the registered object travels as a proxy and is called back"
            assert time.monotonic() - start < 5
            assert listener.answered == [4]
            assert server.events == ["ask 4 start", "nested 4", "ask 4 end"], "the nested call ran inside the outer one"
            assert p.ask(listener, 5) == 51


@CLIENT_TYPES
def test_deep_ping_pong(servertype: str, client_type: str) -> None:
    server = Server()
    with serve(servertype, objects={"server": server}) as srv:
        listener = Listener(srv.daemon.uriFor("server"))
        with serve(client_type, objects={"listener": listener}), srv.proxy("server", timeout=15) as p:
            assert p.ping_pong(listener, 6) == ["server", "client"] * 6 + ["bottom"]


def test_multiplex_independent_calls_still_one_at_a_time() -> None:
    """While a re-entrant chain waits, another client's call waits its turn (it is not interleaved)."""
    server = Server()
    with serve("multiplex", objects={"server": server}) as srv:
        listener = Listener(srv.daemon.uriFor("server"), delay=0.3)
        with serve("thread", objects={"listener": listener}), srv.proxy("server") as p, srv.proxy("server") as other:
            other._pyroBind()
            outer = threading.Thread(target=p.ask, args=(listener, 1))
            outer.start()
            deadline = time.monotonic() + 5
            while "ask 1 start" not in server.events and time.monotonic() < deadline:
                time.sleep(0.005)
            assert other.mark("independent") == "independent"
            outer.join(10)
            assert server.events == ["ask 1 start", "nested 1", "ask 1 end", "independent"]


def test_multiplex_lock_held_across_a_callback_does_not_deadlock_others() -> None:
    """A call holding a lock across a callback: an independent call needing the lock waits, then runs."""
    server = Server()
    with serve("multiplex", objects={"server": server}) as srv:
        listener = Listener(srv.daemon.uriFor("server"), delay=0.2)
        with serve("thread", objects={"listener": listener}), srv.proxy("server") as p, srv.proxy("server") as other:
            other._pyroBind()
            results: list[Any] = []
            outer = threading.Thread(target=lambda: results.append(p.locked_ask(listener, 2)))
            outer.start()
            time.sleep(0.05)
            assert other.needs_lock() == "locked ok"
            outer.join(10)
            assert results == [21]
            assert server.events.index("needs_lock") > server.events.index("nested 2")


def test_multiplex_nested_call_without_correlation_waits_its_turn() -> None:
    """A call back in that lost the correlation id (made from another thread) is not recognised as
    re-entrant: it waits until the outer call is over, so the outer call's callback times out."""
    server = Server()

    @expose
    class ThreadedListener:
        def answer(self, n: int) -> int:
            box: list[Any] = []

            def call_from_other_thread() -> None:
                with Proxy(srv.daemon.uriFor("server")) as again:
                    again._pyroTimeout = 5
                    box.append(again.nested(n))

            t = threading.Thread(target=call_from_other_thread)
            t.start()
            t.join(0.6)
            return box[0] if box else -1

    with serve("multiplex", objects={"server": server}) as srv:
        listener = ThreadedListener()
        with serve("thread", objects={"listener": listener}), srv.proxy("server") as p:
            assert p.ask(listener, 3) == -1
            assert server.events[:2] == ["ask 3 start", "ask 3 end"]


@CLIENT_TYPES
def test_callback_exception_reported_on_both_sides(
    servertype: str, client_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server()
    with serve(servertype, objects={"server": server}) as srv:
        listener = Listener(srv.daemon.uriFor("server"))
        with serve(client_type, objects={"listener": listener}) as client, srv.proxy("server") as p:
            caplog.set_level(logging.INFO)
            assert p.trigger_failing_callback(listener) == "server got KeyError('callback failed')"

            def logged() -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], KeyError)]

            assert wait_until(logged), "the @callback exception is also raised where the callback ran (and logged)"
            assert logged()[0].levelno == logging.WARNING
            with client.proxy("listener") as direct:
                with pytest.raises(KeyError):
                    direct.fails()
                with pytest.raises(errors.ConnectionClosedError):  # the daemon closed the connection (as Pyro4's)
                    direct.plain()
                assert direct.plain() == "plain", "the proxy reconnects"


def test_callback_in_pyro4_style() -> None:
    """The classic Pyro4 recipe, module-level API only."""
    server = Server()
    with serve("thread", objects={"server": server}) as srv:
        daemon = pyroplug.Daemon(host="127.0.0.1")
        listener = Listener(srv.daemon.uriFor("server"))
        daemon.register(listener)
        loop = threading.Thread(target=daemon.requestLoop, daemon=True)
        loop.start()
        try:
            with pyroplug.Proxy(srv.daemon.uriFor("server")) as p:
                assert p.ask(listener, 7) == 71
                assert current_context.correlation_id is None
        finally:
            daemon.shutdown()
            loop.join(5)


def test_unregistered_object_is_not_a_callback() -> None:
    server = Server()
    with serve("thread", objects={"server": server}) as srv, srv.proxy("server") as p:
        with pytest.raises((errors.SerializeError, AttributeError, TypeError)):
            p.ask(Listener(srv.daemon.uriFor("server")), 1)


def test_thread_pool_cannot_be_exhausted_by_callback_chains() -> None:
    """Workers waiting on a remote reply do not count towards THREADPOOL_SIZE (Pyro4#99 deadlocks)."""
    server = Server()
    with serve("thread", objects={"server": server}, THREADPOOL_SIZE=2, THREADPOOL_SIZE_MIN=1) as srv:
        listener = Listener(srv.daemon.uriFor("server"))
        with serve("thread", objects={"listener": listener}, THREADPOOL_SIZE=2, THREADPOOL_SIZE_MIN=1):
            results: list[Any] = []

            def chain() -> None:
                with srv.proxy("server", timeout=15) as p:
                    results.append(p.ping_pong(listener, 5))

            threads = [threading.Thread(target=chain) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            assert results == [["server", "client"] * 5 + ["bottom"]] * 3
