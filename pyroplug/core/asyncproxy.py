"""Asynchronous proxy calls that return FutureResults, served by a small pool of reused connections.

Pyro4 opened a new connection (and tied up a server worker) for every asynchronous call; here each
async proxy keeps a few idle clones, so a stream of async calls reuses the same connections.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyroplug.core.futures import FutureResult, _ExceptionWrapper
from pyroplug.core.workers import ElasticPool

if TYPE_CHECKING:
    from pyroplug.core.proxy import Proxy

__all__ = ["AsyncRemoteMethod", "asyncproxy", "run_async"]

#: idle connections kept per async proxy
MAX_IDLE = 8
_threads = ElasticPool("pyroplug-async")


class _ClonePool:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.idle: list[Proxy] = []
        self.lock = threading.Lock()

    def acquire(self) -> Proxy:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        clone = copy.copy(self.proxy)
        clone._pyroAsync(False)
        return clone

    def release(self, clone: Proxy) -> None:
        with self.lock:
            if len(self.idle) < MAX_IDLE:
                self.idle.append(clone)
                return
        clone._pyroRelease()


def _pool_of(proxy: Proxy) -> _ClonePool:
    pool = proxy.__dict__.get("_async_pool")
    if pool is None:
        pool = proxy.__dict__.setdefault("_async_pool", _ClonePool(proxy))
    return pool


def run_async(proxy: Proxy, work: Callable[[Proxy], Any]) -> FutureResult:
    """Run ``work(connection_clone)`` in the background; the FutureResult gets its value or exception."""
    result = FutureResult()
    pool = _pool_of(proxy)

    def job() -> None:
        clone = pool.acquire()
        try:
            value = work(clone)
        except Exception as exc:
            value = _ExceptionWrapper(exc)
        finally:
            pool.release(clone)
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


def asyncproxy(proxy: Proxy, asynchronous: bool = True) -> Proxy:
    """Switch ``proxy`` to asynchronous mode (Pyro4's ``Pyro4.asyncproxy``) and return it."""
    proxy._pyroAsync(asynchronous)
    return proxy
