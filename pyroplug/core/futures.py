"""Future, FutureResult, and the exception wrapper used inside batch and async results."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from pyroplug.core.serializer import wire_class

__all__ = ["Future", "FutureResult", "_ExceptionWrapper"]

log = logging.getLogger(__name__)


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
    """The result of an asynchronous call: wait for it, read it, or chain work onto it.

    As Pyro4's ``FutureResult``. Chained calls (:meth:`then`) run when the value arrives, each taking
    the previous value as its first argument; an exception (of the call or of a chained call) ends
    the chain, goes to the :meth:`iferror` handler and is re-raised by :attr:`value`.
    """

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
            try:
                self._value = value
                if isinstance(value, _ExceptionWrapper):
                    self._handle_error(value.exception)
                else:
                    for call, args, kwargs in self.callchain:
                        if not self._apply(call, args, kwargs):
                            break
            finally:
                self.callchain = []
                self._ready.set()

    value = property(get_value, set_value, doc="The result value; reading blocks until it is available.")

    def _apply(self, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Replace the value by ``call(value, ...)``; False (value wrapped, handler told) if it raised."""
        try:
            self._value = call(self._value, *args, **kwargs)
        except Exception as exc:
            self._value = _ExceptionWrapper(exc)
            self._handle_error(exc)
            return False
        return True

    def _handle_error(self, exc: BaseException) -> None:
        handler = self.exceptionhandler
        if handler is not None:
            try:
                handler(exc)
            except Exception:  # a failing handler must not leave waiters hanging
                log.exception("exception in the iferror handler of %r", self)

    def set_cancelled(self) -> None:
        """Complete this result with a 'future has been cancelled' error."""
        self.set_value(_ExceptionWrapper(RuntimeError("future has been cancelled")))

    def then(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> FutureResult:
        """Chain ``call(result, *args, **kwargs)``; its return value becomes the new result.

        When the result is already there the call runs at once (not after a failure).
        """
        with self._lock:
            if self._ready.is_set():
                if not isinstance(self._value, _ExceptionWrapper):
                    self._apply(call, args, kwargs)
            else:
                self.callchain.append((call, args, kwargs))
        return self

    def iferror(self, exceptionhandler: Callable[[BaseException], Any]) -> FutureResult:
        """Call ``exceptionhandler(exception)`` if the call (or a chained call) fails.

        Set after the failure already happened, the handler is called at once.
        """
        with self._lock:
            self.exceptionhandler = exceptionhandler
            if self._ready.is_set() and isinstance(self._value, _ExceptionWrapper):
                self._handle_error(self._value.exception)
        return self


class Future:
    """A callable to run asynchronously: calling the Future starts it and returns a FutureResult.

    As Pyro4's ``Future``: :meth:`then` chains calls onto the result, :meth:`iferror` sets an error
    handler, :meth:`delay` postpones the start and :meth:`cancel` stops it before it starts.
    """

    def __init__(self, somecallable: Callable[..., Any]) -> None:
        self.callable = somecallable
        self.chain: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] | None = []
        self.exceptionhandler: Callable[[BaseException], Any] | None = None
        self.call_delay = 0.0
        self.cancelled = False
        self.completed = False
        self._cond = threading.Condition()
        self._start_at: float | None = None  # while it waits for its delay: when it starts

    def __call__(self, *args: Any, **kwargs: Any) -> FutureResult:
        """Start the callable (after the delay, if any) in a thread; returns its FutureResult."""
        with self._cond:
            if self.completed or self.chain is None:
                raise RuntimeError("the future has already been evaluated")
            if self.cancelled:
                raise RuntimeError("the future has been cancelled")
            chain, self.chain = self.chain, None
            self._start_at = time.monotonic() + max(0.0, self.call_delay)
        result = FutureResult()
        threading.Thread(target=self._run, args=(result, chain, args, kwargs), daemon=True, name="pyroplug-future").start()
        return result

    def _run(self, result: FutureResult, chain: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._cond:
            while not self.cancelled:
                assert self._start_at is not None
                remaining = self._start_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self.completed = True
            cancelled = self.cancelled
        if cancelled:
            result.set_cancelled()
            return
        try:
            value = self.callable(*args, **kwargs)
            for call, cargs, ckwargs in chain:
                value = call(value, *cargs, **ckwargs)
        except Exception as exc:
            if self.exceptionhandler is not None:
                try:
                    self.exceptionhandler(exc)
                except Exception:  # the result must still be set
                    log.exception("exception in the iferror handler of %r", self)
            value = _ExceptionWrapper(exc)
        result.set_value(value)

    def delay(self, seconds: float) -> bool:
        """Delay the start by ``seconds`` (from now, also while already waiting); False when it already ran."""
        with self._cond:
            if self.completed:
                return False
            self.call_delay = seconds
            if self._start_at is not None:
                self._start_at = time.monotonic() + max(0.0, seconds)
                self._cond.notify_all()
            return True

    def cancel(self) -> bool:
        """Cancel it if it has not started yet; True on success."""
        with self._cond:
            if self.completed:
                return False
            self.cancelled = True
            self._cond.notify_all()
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
