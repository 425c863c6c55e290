"""Bad calls and failing methods, end to end: clear errors at the client, and the daemon serves on.

Runs against a real Daemon for both server types over TCP (127.0.0.1) and unix sockets, like
``test_faults.py``; after every fault the proxy connected before it and a new proxy both still work.

Decided behaviour for a method that raises a BaseException that is not an Exception (SystemExit,
or a custom BaseException subclass): it is no result of the call, so nothing is sent back; the
daemon logs it, closes *that* connection (the client gets ConnectionClosedError; its proxy
reconnects on the next call) and goes on serving. It never ends the request loop or a thread-pool
worker. This is what Pyro4's multiplex server does; Pyro4's thread server loses the worker thread.
A oneway method raising anything is logged and never answered, and its pool worker survives too.
KeyboardInterrupt stays special: in the multiplex server it ends the request loop (Ctrl-C).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyroplug import errors
from pyroplug.core.protocol import FLAGS_EXCEPTION, FLAGS_ONEWAY, MSG_RESULT
from tests.e2e.faultkit import KINDS, Served, served

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=KINDS, ids=[f"{s}-{t}" for s, t in KINDS])
def kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def h(kind: tuple[str, str]) -> Iterator[Served]:
    with served(*kind) as running:
        yield running


def _raw_call(h: Served, obj: str, method: str, vargs: Any = (), seq: int = 1) -> Any:
    """Invoke over a raw connection; return (is_exception, decoded payload) and check the connection goes on."""
    client = h.handshaken()
    client.invoke(h.ser, obj, method, vargs, seq=seq)
    reply = client.recv_msg()
    assert reply is not None and reply.type == MSG_RESULT and reply.seq == seq
    result = bool(reply.flags & FLAGS_EXCEPTION), h.ser.loads(reply.data)
    client.invoke(h.ser, "svc", "add", (1, 1), seq=seq + 1)
    again = client.recv_msg()
    assert again is not None and again.seq == seq + 1 and h.ser.loads(again.data) == 2
    return result


# --- unknown objects and names ----------------------------------------------------------------
def test_unknown_object(h: Served) -> None:
    uri = str(h.uri).replace("PYRO:svc@", "PYRO:no.such.object@")
    from pyroplug.core.proxy import Proxy

    cfg = h.config.copy()
    with Proxy(uri, config=cfg) as p:  # metadata in the handshake: refused there
        with pytest.raises(errors.CommunicationError, match="unknown object"):
            p.add(1, 2)
    cfg.METADATA = False
    with Proxy(uri, config=cfg) as p:
        with pytest.raises(errors.DaemonError, match="unknown object"):
            p.add(1, 2)
        with pytest.raises(errors.DaemonError, match="unknown object"):
            p.add(1, 2)  # the same connection answers again
    is_error, error = _raw_call(h, "no.such.object", "add", (1, 2))
    assert is_error and isinstance(error, errors.DaemonError) and "unknown object" in str(error)
    h.assert_serving()


PRIVATE_OR_UNKNOWN = {
    "_x": "attempt to access private attribute '_x'",
    "_private": "attempt to access private attribute '_private'",
    "__private": "attempt to access private attribute '__private'",
    "__init__": "attempt to access private attribute '__init__'",
    "__class__": "attempt to access private attribute '__class__'",
    "__getstate__": "attempt to access private attribute '__getstate__'",
    "__reduce_ex__": "attempt to access private attribute '__reduce_ex__'",
    "__dict__": "attempt to access private attribute '__dict__'",
    "_private.__call__": "attempt to access private attribute '_private.__call__'",
    "add.__globals__": "dotted names are not resolved: 'add.__globals__'",
    "service.add": "dotted names are not resolved: 'service.add'",
    "plain_attribute": "attempt to access unexposed attribute 'plain_attribute'",
    "readonly": "attempt to access unexposed attribute 'readonly'",  # a property is no method
    "no_such_method": "has no exposed attribute or method 'no_such_method'",
    "": "has no exposed attribute or method ''",
}


@pytest.mark.parametrize("name", sorted(PRIVATE_OR_UNKNOWN))
def test_private_dotted_and_unknown_names_refused_by_the_daemon(h: Served, name: str) -> None:
    with h.proxy(METADATA=False) as p:  # the proxy does not know what is exposed: the daemon decides
        with pytest.raises(AttributeError) as info:
            p._pyroInvoke(name, (), {})
        assert PRIVATE_OR_UNKNOWN[name] in str(info.value)
        assert p.add(2, 2) == 4
    h.assert_serving()


def test_private_and_unknown_names_refused_by_a_metadata_proxy(h: Served) -> None:
    with h.proxy() as p:
        for name in ("_private", "plain_attribute", "no_such_method", "_x"):
            with pytest.raises(AttributeError):
                getattr(p, name)
        with pytest.raises(AttributeError, match="has no exposed attribute 'plain_attribute'"):
            p.plain_attribute = 5
        assert p.add(2, 3) == 5
    h.assert_serving()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plain_attribute",), "unexposed or unknown remote attribute 'plain_attribute'"),
        (("add",), "unexposed or unknown remote attribute 'add'"),
        (("_private",), "unexposed or unknown remote attribute '_private'"),
        (("__class__",), "unexposed or unknown remote attribute '__class__'"),
        (("__dict__",), "unexposed or unknown remote attribute '__dict__'"),
        (("oneway_done",), "unexposed or unknown remote attribute 'oneway_done'"),  # an instance attribute
        ((), "unexposed or unknown remote attribute 'None'"),
        ((42,), "unexposed or unknown remote attribute '42'"),
    ],
)
def test_getattr_of_anything_but_an_exposed_property(h: Served, args: tuple, message: str) -> None:
    with h.proxy(METADATA=False) as p:
        with pytest.raises(AttributeError) as info:
            p._pyroInvoke("__getattr__", args, None)
        assert message in str(info.value)
        assert p._pyroInvoke("__getattr__", ("readonly",), None) == "fixed"
    h.assert_serving()


@pytest.mark.parametrize(
    "args",
    [("readonly", "changed"), ("plain_attribute", 1), ("add", 1), ("_private", 1), ("__class__", "x"),
     ("value",), ("value", 1, 2), ()],
    ids=["read-only-property", "plain-attribute", "method", "private", "dunder", "no-value", "two-values", "empty"],
)
def test_setattr_refused(h: Served, args: tuple) -> None:
    with h.proxy(METADATA=False) as p:
        with pytest.raises(AttributeError, match="unexposed or unknown remote attribute"):
            p._pyroInvoke("__setattr__", args, None)
        assert p._pyroInvoke("__setattr__", ("value", 7), None) is None  # a writable property is fine
    with h.proxy() as p:
        with pytest.raises(AttributeError, match="unexposed or unknown remote attribute 'readonly'"):
            p.readonly = "changed"
        assert p.readonly == "fixed"
    assert type(h.service).plain_attribute.startswith("a plain class attribute")
    h.assert_serving()


def test_require_expose_refuses_unexposed_members(kind: tuple[str, str]) -> None:
    """The chapter's partly exposed PyroService with REQUIRE_EXPOSE=True."""
    with served(*kind, REQUIRE_EXPOSE=True) as h:
        with h.proxy("partly", METADATA=False) as raw:
            for name, message in [
                ("hidden", "attempt to access unexposed attribute 'hidden'"),
                ("__dunder__", "attempt to access unexposed attribute '__dunder__'"),
                ("value", "attempt to access unexposed attribute 'value'"),
                ("secret", "attempt to access unexposed attribute 'secret'"),
                ("_private", "attempt to access private attribute '_private'"),
                ("__private", "attempt to access private attribute '__private'"),
                ("_PartlyExposed__private", "attempt to access private attribute"),
                ("nothing", "has no exposed attribute or method 'nothing'"),
            ]:
                with pytest.raises(AttributeError) as info:
                    raw._pyroInvoke(name, (), {})
                assert message in str(info.value), (name, str(info.value))
            for attr in ("secret", "value", "hidden"):
                with pytest.raises(AttributeError, match=f"unexposed or unknown remote attribute '{attr}'"):
                    raw._pyroInvoke("__getattr__", (attr,), None)
            with pytest.raises(AttributeError, match="unexposed or unknown remote attribute 'ro'"):
                raw._pyroInvoke("__setattr__", ("ro", "x"), None)
            with pytest.raises(AttributeError, match="unexposed or unknown remote attribute 'secret'"):
                raw._pyroInvoke("__setattr__", ("secret", "x"), None)
            assert raw._pyroInvoke("get_value", (), {}) == 42
        with h.proxy("partly") as p:
            p._pyroBind()
            # like Pyro4 4.82: with REQUIRE_EXPOSE a dunder method needs @expose too (it is merely not private)
            assert p._pyroMethods == {"get_value"} and p._pyroAttrs == {"attr", "ro"}
            for name in ("hidden", "value", "secret", "_private"):
                with pytest.raises(AttributeError):
                    getattr(p, name)
            with pytest.raises(AttributeError, match="unexposed or unknown remote attribute 'ro'"):
                p.ro = "x"
            assert p.ro == "read-only"
            p.attr = 5
            assert p.attr == 5 and p.get_value() == 5  # one session instance per proxy
        h.assert_serving()


def test_daemon_object_refuses_its_internals(h: Served) -> None:
    with h.proxy("Pyro.Daemon", METADATA=False) as d:
        with pytest.raises(AttributeError, match="has no exposed attribute or method 'daemon'"):
            d._pyroInvoke("daemon", (), {})  # an instance attribute holding the Daemon itself
        with pytest.raises(AttributeError, match="private attribute '__init__'"):
            d._pyroInvoke("__init__", (h.daemon,), {})
        with pytest.raises(errors.DaemonError, match="unknown object"):
            d._pyroInvoke("get_metadata", ("no.such.object",), {})
        assert d._pyroInvoke("ping", (), {}) is None
    h.assert_serving()


# --- methods that fail ----------------------------------------------------------------------------
def test_user_exceptions_reach_the_client(h: Served) -> None:
    with h.proxy() as p:
        with pytest.raises(ValueError, match="boom") as info:
            p.fail("boom")
        assert "in fail" in "".join(info.value._pyroTraceback)  # type: ignore[attr-defined]
        with pytest.raises(KeyError, match="missing-key"):
            p.fail_key()
        with pytest.raises(TypeError):
            p.add(1)  # a wrong call signature is the method's TypeError
        with pytest.raises(TypeError):
            p.add(1, 2, c=3)
        # a class the client does not know: the client's serializer refuses to rebuild it
        with pytest.raises(errors.SerializeError, match="unsupported serialized class: tests.e2e.faultkit.CustomError"):
            p.fail_custom()
        assert p.add(5, 5) == 10  # the same proxy goes on
    h.assert_serving()


def test_exception_with_unserializable_args_falls_back_to_pyro_error(h: Served) -> None:
    with h.proxy() as p:
        with pytest.raises(errors.PyroError, match="Error serializing exception") as info:
            p.fail_unserializable()
        assert type(info.value) is errors.PyroError
        assert "Original exception: <class 'ValueError'>" in str(info.value) and "with a lock" in str(info.value)
        assert p.add(1, 1) == 2
    is_error, error = _raw_call(h, "svc", "fail_unserializable")
    assert is_error and "Error serializing exception" in str(error)
    with h.proxy() as p:  # not even str() works on this one
        with pytest.raises(errors.PyroError, match="Error serializing exception") as info:
            p.fail_unprintable()
        assert "<unprintable Unprintable object>" in str(info.value)
    h.assert_serving()


def test_unserializable_result_gives_serialize_error(h: Served) -> None:
    with h.proxy() as p:
        with pytest.raises(errors.SerializeError, match="don't know how to serialize class <class '_thread.lock'>"):
            p.unserializable_result()
        assert p.add(1, 1) == 2
    is_error, error = _raw_call(h, "svc", "unserializable_result")  # the connection stays usable
    assert is_error and isinstance(error, errors.SerializeError)
    h.assert_serving()


@pytest.mark.parametrize("method", ["exit", "fatal"])
def test_base_exception_closes_only_that_connection(h: Served, method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pyroplug")
    with h.proxy() as p:
        assert p.add(1, 2) == 3
        with pytest.raises(errors.ConnectionClosedError):
            getattr(p, method)()
        assert p.add(2, 2) == 4  # the proxy reconnects
    client = h.handshaken()
    client.invoke(h.ser, "svc", method, seq=3)
    client.expect_closed(5)
    assert any("closing" in r.getMessage() for r in caplog.records)
    h.assert_serving()


def test_methods_failing_over_and_over_never_kill_workers(h: Served) -> None:
    baseline = threading.active_count()
    problems: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            with h.proxy() as p:
                for i in range(25):
                    try:
                        if i % 5 == 4:
                            p.exit()
                        else:
                            p.fail(f"{n}-{i}")
                    except ValueError as exc:
                        assert str(exc) == f"{n}-{i}"
                    except errors.ConnectionClosedError:
                        assert i % 5 == 4
                    else:
                        raise AssertionError("the method did not fail")
                assert p.add(n, 1) == n + 1
        except BaseException as exc:  # collected and asserted below
            problems.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not problems, problems
    h.assert_serving()
    assert h.worker_threads() <= h.config.THREADPOOL_SIZE
    if h.servertype == "thread":
        assert h.worker_threads() >= 1  # workers survived every failure
    assert threading.active_count() <= baseline + h.config.THREADPOOL_SIZE + 2


# --- oneway -------------------------------------------------------------------------------------
@pytest.mark.parametrize("threaded", [True, False], ids=["oneway-threaded", "oneway-inline"])
def test_oneway_that_raises_is_logged_not_answered(
    kind: tuple[str, str], threaded: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyroplug")
    with served(*kind, ONEWAY_THREADED=threaded) as h:
        with h.proxy() as p:
            assert p.oneway_fail("oneway boom") is None
            assert h.service.oneway_done.wait(5)
            assert p.add(3, 3) == 6  # same connection, untouched
        # on the wire: the oneway gets no reply at all, the next call gets its own
        client = h.handshaken()
        client.invoke(h.ser, "svc", "oneway_fail", ("raw oneway",), flags=FLAGS_ONEWAY, seq=1)
        client.invoke(h.ser, "svc", "add", (20, 1), seq=2)
        reply = client.recv_msg()
        assert reply is not None and reply.seq == 2 and h.ser.loads(reply.data) == 21
        deadline = time.monotonic() + 5
        while h.service.oneway_runs < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.is_open(0.05)
        time.sleep(0.05)
        logged = [r.getMessage() + (f" {r.exc_info[1]}" if r.exc_info else "") for r in caplog.records]
        assert sum("exception in oneway call" in m for m in logged) >= 2, logged
        assert any("oneway boom" in m for m in logged), logged
        h.assert_serving()


def test_oneway_system_exit_keeps_the_oneway_pool_healthy(h: Served) -> None:
    pool = h.daemon._oneway_pool
    assert pool is not None
    with h.proxy() as p:
        for _ in range(30):
            h.service.oneway_done.clear()
            assert p.oneway_exit() is None
            assert h.service.oneway_done.wait(5)
            time.sleep(0.005)
        assert p.add(1, 2) == 3
    alive = sum(1 for t in threading.enumerate() if t.name.startswith("oneway-call"))
    assert pool.workers <= alive + 1, f"the pool counts {pool.workers} workers, {alive} threads are alive"
    h.service.oneway_done.clear()
    runs = h.service.oneway_runs
    with h.proxy() as p:
        p.oneway_fail("after the exits")
    assert h.service.oneway_done.wait(5) and h.service.oneway_runs == runs + 1
    h.assert_serving()
