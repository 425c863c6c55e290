"""Asynchronous proxy calls that return FutureResults, served by a small pool of reused connections.

Pyro4 opened a new connection (and tied up a server worker) for every asynchronous call; here each
async proxy keeps a few idle clones, so a stream of async calls reuses the same connections and
concurrent async calls use one connection each, only as many as are in flight. The caller's
``current_context`` annotations and correlation id go with the call (Pyro4 lost them: its call ran in
a fresh thread). A clone that a stock Pyro4 thread server refuses with "no free workers" (its workers
are held by connections, some perhaps this proxy's own idle ones) takes the next of this proxy's
connections to come free, or retries the connect with a growing random back-off, as Pyro4 does.

Because clones are reused, a session-mode object sees one instance per pooled connection rather than
one per async call.
"""

from __future__ import annotations

import copy
import random
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.context import current_context
from pyroplug.core.futures import FutureResult, _ExceptionWrapper
from pyroplug.core.workers import ElasticPool

if TYPE_CHECKING:
    from pyroplug.core.proxy import Proxy

__all__ = ["AsyncRemoteMethod", "asyncproxy", "release_clones", "run_async"]

#: idle connections kept per async proxy
MAX_IDLE = 8
_threads = ElasticPool("pyroplug-async")


def _settings(proxy: Proxy) -> tuple[Any, ...]:
    """What a clone copies from its proxy; an idle clone with other settings is not reused."""
    return (str(proxy._pyroUri), proxy._pyroSerializer, proxy._hmac, proxy._pyroHandshake, proxy._timeout,
            proxy._pyroMaxRetries, proxy._pyroRawWireResponse)


class _ClonePool:
    """Idle synchronous clones of one async proxy, each with its own connection.

    It refers to its proxy weakly (the proxy holds the pool), so a dropped async proxy is freed at once
    and its idle clones close their connections with it.
    """

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = weakref.ref(proxy)
        self.idle: list[tuple[tuple[Any, ...], Proxy]] = []
        self.lock = threading.Condition(threading.Lock())

    @property
    def proxy(self) -> Proxy:
        """The async proxy (kept alive by every call in flight, which refers to it)."""
        proxy = self._proxy()
        if proxy is None:
            raise errors.PyroError("the async proxy is gone")
        return proxy

    def acquire(self) -> Proxy:
        """An idle clone with the proxy's current settings, or a new (not yet connected) one."""
        wanted = _settings(self.proxy)
        stale: list[Proxy] = []
        with self.lock:
            clone = self._take_idle(wanted, stale)
        for old in stale:
            old._pyroRelease()
        if clone is None:
            clone = copy.copy(self.proxy)
            clone._pyroAsync(False)
        return clone

    def _take_idle(self, wanted: tuple[Any, ...], stale: list[Proxy]) -> Proxy | None:
        while self.idle:  # with the lock held
            settings, candidate = self.idle.pop()
            if settings == wanted:
                return candidate
            stale.append(candidate)
        return None

    def wait_idle(self, timeout: float) -> Proxy | None:
        """An idle clone with the current settings once one is released (None after ``timeout``)."""
        wanted = _settings(self.proxy)
        stale: list[Proxy] = []
        with self.lock:
            clone = self._take_idle(wanted, stale)
            if clone is None and self.lock.wait(timeout):
                clone = self._take_idle(wanted, stale)
        for old in stale:
            old._pyroRelease()
        return clone

    def release(self, clone: Proxy) -> None:
        """Keep ``clone`` for the next call (up to MAX_IDLE), else close it."""
        if clone._pyroConnection is not None:
            with self.lock:
                if len(self.idle) < MAX_IDLE:
                    self.idle.append((_settings(clone), clone))
                    self.lock.notify()
                    return
        clone._pyroRelease()

    def close(self) -> None:
        """Close every idle clone's connection."""
        with self.lock:
            idle, self.idle = self.idle, []
        for _s, clone in idle:
            clone._pyroRelease()

    @property
    def connections(self) -> int:
        """How many idle clones hold a connection."""
        return sum(1 for _s, c in self.idle if c._pyroConnection is not None)


def _pool_of(proxy: Proxy) -> _ClonePool:
    pool = proxy.__dict__.get("_async_pool")
    if pool is None:
        pool = proxy.__dict__.setdefault("_async_pool", _ClonePool(proxy))
    return pool


def release_clones(proxy: Proxy) -> None:
    """Close the idle connections of ``proxy``'s async clones (done by ``_pyroRelease``)."""
    pool = proxy.__dict__.get("_async_pool")
    if pool is not None:
        pool.close()


def _bind(pool: _ClonePool, clone: Proxy) -> Proxy:
    """``clone`` connected, or another connected clone of the pool.

    While the server refuses the connect with "no free workers", wait (a growing random back-off, as
    Pyro4's) for one of the pool's connections to come free and use it instead, else try again.
    """
    delay = 0.1 + random.random() / 5
    while clone._pyroConnection is None:
        try:
            clone._pyroBind()
        except errors.CommunicationError as exc:
            timeout = clone._pyroTimeout or 0.0
            if "no free workers" not in str(exc) or 0 < timeout / 2 < delay:
                raise
            idle = pool.wait_idle(delay)
            if idle is not None:
                return idle
            delay += 0.4 + random.random() / 2
    return clone


def run_async(proxy: Proxy, work: Callable[[Proxy], Any]) -> FutureResult:
    """Run ``work(connection_clone)`` in the background; the FutureResult gets its value or exception.

    The caller's pending ``current_context.annotations`` are sent with this call (and cleared), and
    its correlation id, if set, too.
    """
    result = FutureResult()
    pool = _pool_of(proxy)
    ctx = current_context
    annotations = ctx.annotations
    if annotations:
        ctx.annotations = {}
    correlation = ctx.correlation_id_bytes

    def job() -> None:
        assert proxy is not None  # the job keeps the proxy (and so its pool) alive until it is done
        ctx.annotations = annotations
        ctx.correlation_id_bytes = correlation
        try:
            clone = pool.acquire()
            try:
                clone = _bind(pool, clone)
                value = work(clone)
            finally:
                pool.release(clone)
        except Exception as exc:
            value = _ExceptionWrapper(exc)
        finally:
            ctx.annotations = {}
            ctx.correlation_id_bytes = None
        result.set_value(value)

    _threads.submit(job)
    return result


class AsyncRemoteMethod:
    """A remote method of an async proxy: calling it returns a FutureResult at once."""

    __slots__ = ("_proxy", "_name")

    def __init__(self, proxy: Proxy, name: str) -> None:
        self._proxy = proxy
        self._name = name

    def __getattr__(self, name: str) -> AsyncRemoteMethod:
        return AsyncRemoteMethod(self._proxy, f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> FutureResult:
        name = self._name
        return run_async(self._proxy, lambda clone: getattr(clone, name)(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<async remote method {self._name!r} of {self._proxy._pyroUri}>"


def asyncproxy(proxy: Proxy, asynchronous: bool = True) -> Proxy:
    """Switch ``proxy`` to asynchronous mode (Pyro4's ``Pyro4.asyncproxy``) and return it."""
    proxy._pyroAsync(asynchronous)
    return proxy
