"""End-to-end conformance suite: a real daemon and real proxies over a transport, server type and serializer.

Subclass :class:`DaemonProxyConformance` and provide a ``stack`` fixture returning a :class:`Stack`
(see :func:`running_stack`); every test then runs against that combination. pyroplug's own tests
parametrize it over every registered server type, transport and safe serializer, so a new plugin is
covered by adding it to the registry, and a third-party plugin can subclass the same suite.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core.config import Config
from pyroplug.core.daemon import Daemon
from pyroplug.core.proxy import Proxy
from pyroplug.core.uri import URI
from pyroplug.testing.services import Calculator, Item, PerCall, Replier, Session, Single, Tagged

__all__ = ["DaemonProxyConformance", "Stack", "running_stack"]


@dataclass
class Stack:
    """A running daemon with the suite's objects registered, and how to reach it."""

    daemon: Daemon
    config: Config
    serializer: str
    calc: Calculator
    uris: dict[str, URI] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def proxy(self, name: str = "calc", **overrides: Any) -> Proxy:
        cfg = self.config.copy()
        cfg.SERIALIZER = self.serializer
        for key, value in overrides.items():
            setattr(cfg, key, value)
        return Proxy(self.uris[name], config=cfg)


@contextlib.contextmanager
def running_stack(
    servertype: str, serializer: str, transport: str = "tcp", host: str = "127.0.0.1", address: str | None = None,
    **config_items: Any,
) -> Iterator[Stack]:
    """Start a daemon in a background thread with the suite's objects registered; close it afterwards."""
    cfg = Config()
    cfg.SERVERTYPE = servertype
    cfg.SERIALIZERS_ACCEPTED = {serializer}
    cfg.POLLTIMEOUT = 0.5
    for key, value in config_items.items():
        setattr(cfg, key, value)
    if transport == "tcp":
        daemon = Daemon(host=host, config=cfg)
    elif transport == "u":
        daemon = Daemon(unixsocket=address, config=cfg)
    else:
        daemon = Daemon(transport=transport, address=address, config=cfg)
    calc = Calculator()
    stack = Stack(daemon, cfg, serializer, calc)
    stack.uris["calc"] = daemon.register(calc, "calc")
    for cls in (Single, Session, PerCall, Tagged):
        stack.uris[cls.__name__.lower()] = daemon.register(cls, cls.__name__.lower())
    stack.uris["daemon"] = daemon.uriFor("Pyro.Daemon")
    stack.thread = threading.Thread(target=daemon.requestLoop, name=f"daemon-{servertype}", daemon=True)
    stack.thread.start()
    try:
        yield stack
    finally:
        daemon.shutdown()
        stack.thread.join(10)
        daemon.close()


class DaemonProxyConformance:
    """The end-to-end behaviour every server type x transport x serializer combination must have."""

    # Subclasses provide a ``stack`` fixture yielding a running :class:`Stack`.

    # --- calls -----------------------------------------------------------------------
    def test_call_and_kwargs(self, stack: Stack) -> None:
        with stack.proxy() as p:
            assert p.add(1, 2) == 3
            assert p.add(1, b=41) == 42
            assert p.add("a", "b") == "ab"
            assert p.echo([1, 2.5, "x", {"k": [None, True]}]) == [1, 2.5, "x", {"k": [None, True]}]

    def test_large_payload(self, stack: Stack) -> None:
        text = "x" * 3_000_000
        with stack.proxy() as p:
            assert p.echo(text) == text

    def test_remote_exception_with_traceback(self, stack: Stack) -> None:
        from pyroplug.core.tracebacks import getPyroTraceback

        with stack.proxy() as p:
            with pytest.raises(ValueError) as info:
                p.fail("boom", 7)
            assert info.value.args == ("boom", 7)
            assert getattr(info.value, "code", None) == 7
            remote = "".join(getattr(info.value, "_pyroTraceback", []))
            assert "in fail" in remote and "ValueError" in remote
            assert "Remote traceback" in "".join(getPyroTraceback(type(info.value), info.value, info.value.__traceback__))
            with pytest.raises(ZeroDivisionError):
                p.divide(1, 0)
            assert p.add(2, 2) == 4  # the connection survives a remote error

    def test_oneway_returns_at_once(self, stack: Stack) -> None:
        stack.calc.oneway_event.clear()
        with stack.proxy() as p:
            p._pyroBind()
            assert "record_slowly" in p._pyroOneway
            start = time.perf_counter()
            assert p.record_slowly("late", 0.5) is None
            assert time.perf_counter() - start < 0.4
            assert p.add(1, 1) == 2  # ONEWAY_THREADED: the connection is not blocked by the oneway call
            assert stack.calc.oneway_event.wait(5)
            assert "late" in stack.calc.oneway_log

    def test_properties(self, stack: Stack) -> None:
        with stack.proxy() as p:
            p._pyroBind()
            assert p._pyroAttrs >= {"value", "readonly"}
            assert p.readonly == "fixed"
            p.value = 99
            assert p.value == 99
            with pytest.raises(AttributeError):
                p.readonly = "changed"
            p.value = 42

    def test_metadata_and_unknown_names(self, stack: Stack) -> None:
        with stack.proxy() as p:
            p._pyroBind()
            assert {"add", "echo", "fail", "__dunder__", "__len__"} <= p._pyroMethods
            assert "record" in p._pyroOneway
            assert "_private" not in p._pyroMethods and "plain_attribute" not in p._pyroMethods
            assert p.__dunder__() == "dunder"
            with pytest.raises(AttributeError):
                p.nonexisting()
            with pytest.raises(AttributeError):
                p._private()

    def test_private_and_unexposed_refused_by_daemon(self, stack: Stack) -> None:
        with stack.proxy(METADATA=False) as p:
            for name in ("_private", "__init__", "__class__", "plain_attribute", "missing", "a.b", "__getstate__"):
                with pytest.raises(AttributeError):
                    p._pyroInvoke(name, (), {})
            assert p._pyroInvoke("add", (1, 2), {}) == 3

    def test_require_expose(self, stack: Stack) -> None:
        with stack.proxy("tagged") as p:  # default REQUIRE_EXPOSE=False: everything public
            assert p.hidden() == "hidden"
        stack.daemon.config.REQUIRE_EXPOSE = True
        try:
            with stack.proxy("tagged") as p:
                assert p.visible() == "visible"
                assert p.shown == "shown"
                assert "hidden" not in p._pyroMethods
                with pytest.raises(AttributeError):
                    p._pyroInvoke("hidden", (), {})
        finally:
            stack.daemon.config.REQUIRE_EXPOSE = False

    def test_unknown_object(self, stack: Stack) -> None:
        uri = URI(str(stack.uris["calc"]).replace("PYRO:calc@", "PYRO:nosuchobject@"))
        cfg = stack.config.copy()
        cfg.SERIALIZER = stack.serializer
        with Proxy(uri, config=cfg) as p:
            with pytest.raises(errors.CommunicationError, match="unknown object"):
                p.add(1, 2)
        cfg.METADATA = False
        with Proxy(uri, config=cfg) as p:
            with pytest.raises(errors.DaemonError, match="unknown object"):
                p.add(1, 2)

    def test_instance_modes(self, stack: Stack) -> None:
        with stack.proxy("single") as a, stack.proxy("single") as b:
            assert a.instance_id() == b.instance_id()
        with stack.proxy("session") as a, stack.proxy("session") as b:
            assert a.increment() == 1 and a.increment() == 2
            assert b.increment() == 1
            assert a.instance_id() != b.instance_id()
        with stack.proxy("percall") as a:
            assert a.increment() == 1 and a.increment() == 1

    def test_daemon_object(self, stack: Stack) -> None:
        with stack.proxy("daemon") as d:
            assert d.ping() is None
            assert {"calc", "Pyro.Daemon"} <= set(d.registered())
            assert "Pyro.Daemon bound on" in d.info()
            meta = d.get_metadata("calc", True)
            assert "add" in meta["methods"] and "value" in meta["attrs"]

    def test_streaming(self, stack: Stack) -> None:
        with stack.proxy() as p:
            assert list(p.count_up(5)) == [0, 1, 2, 3, 4]
            it = p.count_up(100)
            assert next(it) == 0
            it.close()
            with pytest.raises(errors.PyroError):
                p.lazy_view()
            assert p.add(1, 1) == 2

    def test_batch(self, stack: Stack) -> None:
        with stack.proxy(METADATA=True) as p:
            b = p._pyroBatch()
            b.add(1, 2)
            b.echo("x")
            b.fail("in batch")
            b.add(5, 5)
            results = b()
            assert next(results) == 3
            assert next(results) == "x"
            with pytest.raises(ValueError):
                next(results)

    def test_proxy_copy_and_threads(self, stack: Stack) -> None:
        with stack.proxy() as p:
            errors_seen: list[BaseException] = []

            def worker(n: int) -> None:
                try:
                    for i in range(20):
                        assert p.add(n, i) == n + i
                except BaseException as exc:  # collected and asserted below
                    errors_seen.append(exc)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not errors_seen
            clone = copy.copy(p)
            with clone:
                assert clone.add(1, 1) == 2
            assert clone == p

    def test_release_and_reconnect(self, stack: Stack) -> None:
        with stack.proxy() as p:
            assert p.add(1, 1) == 2
            p._pyroRelease()
            assert p._pyroConnection is None
            assert p.add(2, 2) == 4
            p._pyroReconnect()
            assert p.add(3, 3) == 6
            assert p._pyroBind() is False

    def test_rejected_serializer(self, stack: Stack) -> None:
        other = "marshal" if stack.serializer != "marshal" else "json"
        with stack.proxy(SERIALIZER=other) as p:
            p._pyroSerializer = other
            with pytest.raises(errors.CommunicationError, match="not accepted"):
                p.add(1, 2)

    def test_handshake_hooks(self, stack: Stack) -> None:
        seen: list[Any] = []

        class Checked(Proxy):
            def _pyroValidateHandshake(self, response: Any) -> None:
                seen.append(response)

        cfg = stack.config.copy()
        cfg.SERIALIZER = stack.serializer
        with Checked(stack.uris["calc"], config=cfg) as p:
            p._pyroHandshake = "hi there"
            assert p.add(1, 2) == 3
        assert seen == ["hello"]

    def test_autoproxy(self, stack: Stack) -> None:
        with stack.proxy() as p:
            item = p.new_item("first")
            assert isinstance(item, Proxy)
            with item:
                assert item.get_name() == "first"
                assert item.rename("second") == "second"
        assert stack.calc.items[-1].name == "second"
        assert isinstance(stack.calc.items[-1], Item)

    def test_callback_object(self, stack: Stack) -> None:
        cfg = stack.config.copy()
        cfg.SERVERTYPE = "thread"
        with Daemon(host="127.0.0.1", config=cfg) as client_daemon:
            replier = Replier()
            client_daemon.register(replier)
            t = threading.Thread(target=client_daemon.requestLoop, daemon=True)
            t.start()
            try:
                with stack.proxy() as p:
                    assert p.call_back(replier, 5) in (["replied", 5], ("replied", 5))
            finally:
                client_daemon.shutdown()
                t.join(5)
