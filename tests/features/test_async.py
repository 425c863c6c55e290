"""Asynchronous proxies: FutureResults, and a small pool of reused connections instead of one per call."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

import pyroplug
from pyroplug import errors
from pyroplug.core.context import current_context
from pyroplug.core.daemon import Daemon
from pyroplug.core.futures import FutureResult
from tests.features.services import Service, SessionCounter
from tests.features.support import serve, wait_until


class ConnectionCountingDaemon(Daemon):
    """Counts the connections it accepted and the ones that closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened = 0
        self.closed = 0
        self.lock = threading.Lock()

    def connection_opened(self, conn: Any) -> None:
        with self.lock:
            self.opened += 1
        super().connection_opened(conn)

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802 - Pyro4 API
        with self.lock:
            self.closed += 1


def test_async_calls_and_futures(servertype: str) -> None:
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        assert pyroplug.asyncproxy(p) is p
        f = p.add(20, 22)
        assert isinstance(f, FutureResult)
        assert f.wait(10) and f.ready and f.value == 42
        errors_seen: list[BaseException] = []
        g = p.fail("async failure").iferror(errors_seen.append)
        assert g.wait(10)
        with pytest.raises(ValueError, match="async failure"):
            _ = g.value
        assert isinstance(errors_seen[0], ValueError)
        assert p.add(1, 1).then(lambda v: v * 10).then(lambda v, extra: v + extra, 2).value == 22
        assert p.record("oneway in async mode").value is None
        assert p.wait_log(1).value == ["oneway in async mode"]
        p._pyroAsync(False)
        assert p.add(1, 2) == 3, "back to synchronous calls"


def test_async_calls_run_concurrently(servertype: str) -> None:
    if servertype == "multiplex":
        pytest.skip("a multiplex daemon runs one call at a time")
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        p._pyroAsync()
        start = time.monotonic()
        futures = [p.slow(0.3) for _ in range(10)]
        assert [f.value for f in futures] == [0.3] * 10
        assert time.monotonic() - start < 2.0


def test_sequential_async_calls_reuse_connections(servertype: str) -> None:
    """Pyro4 opens a connection per async call; pyroplug's async proxy keeps a few and reuses them."""
    with serve(servertype, ConnectionCountingDaemon, {"svc": Service()}) as served:
        daemon = served.daemon
        assert isinstance(daemon, ConnectionCountingDaemon)
        with served.proxy("svc") as p:
            p._pyroAsync()
            for i in range(200):
                assert p.add(i, 1).value == i + 1
            assert daemon.opened <= 3, f"{daemon.opened} connections for 200 sequential async calls"
            seen = {p.connection_id().value for _ in range(20)}
            assert len(seen) <= 2
        assert wait_until(lambda: daemon.closed == daemon.opened), "releasing the proxy closes its async clones too"


def test_many_concurrent_async_calls_never_refused(servertype: str) -> None:
    """Far more concurrent async calls than THREADPOOL_SIZE: all are served, none refused."""
    config = {"THREADPOOL_SIZE": 4, "THREADPOOL_SIZE_MIN": 1}
    with serve(servertype, ConnectionCountingDaemon, {"svc": Service()}, **config) as served, served.proxy("svc") as p:
        p._pyroAsync()
        futures = [p.slow(0.02) for _ in range(60)]
        assert all(f.wait(20) for f in futures)
        assert [f.value for f in futures] == [0.02] * 60
        daemon = served.daemon
        assert isinstance(daemon, ConnectionCountingDaemon)
        idle = p._async_pool.connections
        assert idle <= 8, "at most MAX_IDLE connections are kept afterwards"


def test_async_settings_changes_and_session_instances(servertype: str) -> None:
    with serve(servertype, objects={"counter": SessionCounter}) as served, served.proxy("counter") as p:
        p._pyroAsync()
        counts = [p.increment().value for _ in range(5)]
        assert counts == [1, 2, 3, 4, 5], "sequential async calls reuse one pooled connection (one session)"
        p._pyroTimeout = 7.5
        assert p.increment().value == 1, "a clone with outdated settings is replaced by a fresh connection"


def test_async_call_carries_context_annotations_and_correlation(servertype: str) -> None:
    corr = uuid.uuid4()
    with serve(servertype, objects={"svc": Service()}) as served, served.proxy("svc") as p:
        p._pyroAsync()
        current_context.correlation_id = corr
        current_context.annotations = {"XASY": b"for the next call"}
        try:
            seen = p.context().value
            again = p.context().value
        finally:
            current_context.correlation_id = None
            current_context.annotations = {}
        assert seen["corr"] == str(corr) and seen["annotations"] == {"XASY": "for the next call"}
        assert again["corr"] == str(corr) and again["annotations"] == {}, "annotations go with one call only"


def test_async_connect_failure_is_the_result() -> None:
    with serve("thread", objects={"svc": Service()}) as served:
        uri = served.daemon.uriFor("svc")
    p = pyroplug.Proxy(uri)
    p._pyroTimeout = 2
    p._pyroMethods = {"add"}
    p._pyroAsync()
    result = p.add(1, 2)
    assert result.wait(10)
    with pytest.raises(errors.CommunicationError):
        _ = result.value
