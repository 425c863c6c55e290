"""Batch calls: queue method calls on a BatchProxy, send them as one message, get a result generator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.futures import _ExceptionWrapper

if TYPE_CHECKING:
    from pyroplug.core.proxy import Proxy

__all__ = ["BatchProxy", "batch"]


class _BatchedMethod:
    __slots__ = ("_calls", "_name")

    def __init__(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], name: str) -> None:
        self._calls = calls
        self._name = name

    def __getattr__(self, name: str) -> _BatchedMethod:
        return _BatchedMethod(self._calls, f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._calls.append((self._name, args, kwargs))


class BatchProxy:
    """Records calls; calling the BatchProxy itself sends them all in one batch message.

    ``batch()`` returns a generator of the results in order, raising the remote exception where a
    call failed (the daemon stops the batch there). ``batch(oneway=True)`` returns None at once;
    ``batch(asynchronous=True)`` returns a FutureResult of that generator.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.__proxy = proxy
        self.__calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> _BatchedMethod:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _BatchedMethod(self.__calls, name)

    def __enter__(self) -> BatchProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __copy__(self) -> BatchProxy:
        clone = type(self)(self.__proxy)
        clone.__calls = list(self.__calls)
        return clone

    @staticmethod
    def _results(results: list[Any]) -> Iterator[Any]:
        for result in results:
            if isinstance(result, _ExceptionWrapper):
                result.raiseIt()
            yield result

    def __call__(self, oneway: bool = False, asynchronous: bool = False) -> Any:
        if oneway and asynchronous:
            raise errors.PyroError("async oneway calls make no sense")
        calls, self.__calls = self.__calls, []
        if asynchronous:
            from pyroplug.core.asyncproxy import run_async

            return run_async(self.__proxy, lambda p: self._results(p._pyroInvokeBatch(calls)))
        results = self.__proxy._pyroInvokeBatch(calls, oneway)
        if oneway:
            return None
        return self._results(results)


def batch(proxy: Proxy) -> BatchProxy:
    """A BatchProxy for ``proxy`` (Pyro4's ``Pyro4.batch(proxy)``)."""
    return proxy._pyroBatch()
