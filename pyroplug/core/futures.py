"""Future, FutureResult, and the exception wrapper used inside batch and async results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from pyroplug.core.serializer import wire_class

__all__ = ["Future", "FutureResult", "_ExceptionWrapper"]


@wire_class("Pyro4.futures._ExceptionWrapper")
class _ExceptionWrapper:
    """Carries an exception inside a batch or async result list; :meth:`raiseIt` re-raises it."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def raiseIt(self) -> NoReturn:  # noqa: N802 - Pyro4 API
        """Raise the wrapped exception."""
        raise self.exception

    def __getstate__(self) -> dict:
        return {"exception": self.exception}

    def __setstate__(self, state: dict) -> None:
        self.exception = state["exception"]

    def __repr__(self) -> str:
        return f"<_ExceptionWrapper {self.exception!r}>"


class FutureResult:
    """The result of an asynchronous call: wait for it, read it, or chain work onto it."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._value: Any = None
        self.callchain: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.exceptionhandler: Callable[[BaseException], Any] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the result is available (or the timeout passes); True when ready."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        """True when the result is available."""
        return self._ready.is_set()

    def get_value(self) -> Any:
        """The result; blocks until it is there, and re-raises the call's exception."""
        self._ready.wait()
        if isinstance(self._value, _ExceptionWrapper):
            self._value.raiseIt()
        return self._value

    def set_value(self, value: Any) -> None:
        """Store the result, run the chained calls (or the error handler) and wake waiters."""
        with self._lock:
            self._value = value
            if isinstance(value, _ExceptionWrapper):
                if self.exceptionhandler is not None:
                    self.exceptionhandler(value.exception)
            else:
                for call, args, kwargs in self.callchain:
                    try:
                        self._value = call(self._value, *args, **kwargs)
                    except Exception as exc:
                        self._value = _ExceptionWrapper(exc)
                        if self.exceptionhandler is not None:
                            self.exceptionhandler(exc)
                        break
            self.callchain = []
            self._ready.set()

    value = property(get_value, set_value, doc="The result value; reading blocks until it is available.")

    def set_cancelled(self) -> None:
        """Complete this result with a 'future has been cancelled' error."""
        self.set_value(_ExceptionWrapper(RuntimeError("future has been cancelled")))

    def then(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureResult:
        """Chain ``call(result, *args, **kwargs)``; its return value becomes the new result."""
        with self._lock:
            if self._ready.is_set():
                if not isinstance(self._value, _ExceptionWrapper):
                    self._value = call(self._value, *args, **kwargs)
            else:
                self.callchain.append((call, args, kwargs))
        return self

    def iferror(self, exceptionhandler: Callable[[BaseException], Any]) -> FutureResult:
        """Call ``exceptionhandler(exception)`` if the call (or a chained call) fails."""
        self.exceptionhandler = exceptionhandler
        return self


class Future:
    """A callable to run asynchronously: calling the Future starts it and returns a FutureResult."""

    def __init__(self, somecallable: Callable[..., Any]) -> None:
        self.callable = somecallable
        self.chain: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] | None = []
        self.exceptionhandler: Callable[[BaseException], Any] | None = None
        self.call_delay = 0.0
        self.cancelled = False
        self.completed = False

    def __call__(self, *args: Any, **kwargs: Any) -> FutureResult:
        if self.completed or self.chain is None:
            raise RuntimeError("the future has already been evaluated")
        if self.cancelled:
            raise RuntimeError("the future has been cancelled")
        chain, self.chain = self.chain, None
        result = FutureResult()
        threading.Thread(target=self._run, args=(result, chain, args, kwargs), daemon=True, name="pyroplug-future").start()
        return result

    def _run(self, result: FutureResult, chain: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.call_delay
        while not self.cancelled and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if self.cancelled:
            self.completed = True
            result.set_cancelled()
            return
        self.completed = True
        try:
            value = self.callable(*args, **kwargs)
            for call, cargs, ckwargs in chain:
                value = call(value, *cargs, **ckwargs)
        except Exception as exc:
            if self.exceptionhandler is not None:
                self.exceptionhandler(exc)
            value = _ExceptionWrapper(exc)
        result.set_value(value)

    def delay(self, seconds: float) -> bool:
        """Delay the start by ``seconds``; False when it already ran."""
        if self.completed:
            return False
        self.call_delay = seconds
        return True

    def cancel(self) -> bool:
        """Cancel it if it has not started yet; True on success."""
        if self.completed:
            return False
        self.cancelled = True
        return True

    def then(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Chain ``call(result, *args, **kwargs)`` after the callable."""
        if self.chain is None:
            raise RuntimeError("the future has already been evaluated")
        self.chain.append((call, args, kwargs))
        return self

    def iferror(self, exceptionhandler: Callable[[BaseException], Any]) -> Future:
        """Call ``exceptionhandler(exception)`` when the callable or the chain fails."""
        self.exceptionhandler = exceptionhandler
        return self
