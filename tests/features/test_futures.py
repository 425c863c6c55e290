"""FutureResult, Future and _ExceptionWrapper (Pyro4's futures module), without any network."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import pyroplug
from pyroplug.core.futures import Future, FutureResult, _ExceptionWrapper
from pyroplug.core.registry import get_registry


def test_pyro4_names() -> None:
    assert pyroplug.Future is Future and pyroplug.FutureResult is FutureResult
    assert pyroplug.futures.FutureResult is FutureResult
    assert pyroplug.futures._ExceptionWrapper is _ExceptionWrapper


# ---------------------------------------------------------------- FutureResult
def test_wait_ready_value() -> None:
    r = FutureResult()
    assert not r.ready
    assert r.wait(0.01) is False
    threading.Timer(0.05, lambda: setattr(r, "value", 42)).start()
    assert r.wait(5) is True
    assert r.ready and r.value == 42 and r.get_value() == 42


def test_value_blocks_until_set() -> None:
    r = FutureResult()
    threading.Timer(0.05, r.set_value, args=("late",)).start()
    start = time.monotonic()
    assert r.value == "late"
    assert time.monotonic() - start >= 0.04


def test_exception_result_raises_and_calls_handler() -> None:
    seen: list[BaseException] = []
    r = FutureResult().iferror(seen.append)
    error = KeyError("k")
    r.value = _ExceptionWrapper(error)
    assert r.ready
    with pytest.raises(KeyError):
        _ = r.value
    assert seen == [error]


def test_then_chain_runs_in_order_with_extra_arguments() -> None:
    r = FutureResult()
    assert r.then(lambda v, a, b=0: v + a + b, 1, b=2).then(lambda v: v * 10) is r
    r.value = 7
    assert r.value == 100


def test_then_after_ready_runs_at_once() -> None:
    r = FutureResult()
    r.value = 2
    r.then(lambda v: v ** 5)
    assert r.value == 32


def test_failing_chained_call_ends_the_chain() -> None:
    seen: list[BaseException] = []
    ran: list[Any] = []
    r = FutureResult().iferror(seen.append)
    r.then(lambda v: v / 0).then(ran.append)
    r.value = 1
    with pytest.raises(ZeroDivisionError):
        _ = r.value
    assert ran == [] and isinstance(seen[0], ZeroDivisionError)


def test_then_after_failure_is_skipped_and_iferror_after_failure_is_called() -> None:
    r = FutureResult()
    r.value = _ExceptionWrapper(ValueError("v"))
    ran: list[Any] = []
    r.then(ran.append)
    assert ran == []
    seen: list[BaseException] = []
    r.iferror(seen.append)
    assert [type(e) for e in seen] == [ValueError], "a handler set after the failure still hears of it"


def test_failing_handler_still_completes_the_result() -> None:
    def bad_handler(exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    r = FutureResult().iferror(bad_handler)
    r.value = _ExceptionWrapper(ValueError("v"))
    assert r.wait(1)
    with pytest.raises(ValueError):
        _ = r.value


def test_set_cancelled() -> None:
    r = FutureResult()
    r.set_cancelled()
    with pytest.raises(RuntimeError, match="cancelled"):
        _ = r.value


# ---------------------------------------------------------------- Future
def test_future_runs_callable_in_a_thread_with_chain() -> None:
    threads: list[str] = []

    def work(a: int, b: int) -> int:
        threads.append(threading.current_thread().name)
        return a * b

    f = Future(work).then(lambda v, extra: v + extra, 1).then(str)
    result = f(6, 7)
    assert isinstance(result, FutureResult)
    assert result.value == "43"
    assert threads and threads[0] != threading.current_thread().name
    assert f.completed
    with pytest.raises(RuntimeError, match="already been evaluated"):
        f(1, 2)
    with pytest.raises(RuntimeError, match="already been evaluated"):
        f.then(str)
    assert f.delay(1) is False and f.cancel() is False


def test_future_error_goes_to_handler_and_value() -> None:
    seen: list[BaseException] = []
    done = threading.Event()

    def handler(exc: BaseException) -> None:
        seen.append(exc)
        done.set()

    table: dict[str, int] = {}
    result = Future(lambda: table["missing"]).iferror(handler)()
    with pytest.raises(KeyError):
        _ = result.value
    assert done.wait(1) and isinstance(seen[0], KeyError)


def test_future_delay_and_cancel_during_delay() -> None:
    f = Future(time.monotonic)
    assert f.delay(0.2) is True
    start = time.monotonic()
    assert f().value - start >= 0.19

    g = Future(lambda: "ran")
    g.delay(10)
    result = g()
    time.sleep(0.05)
    assert g.cancel() is True
    assert result.wait(2), "cancelling wakes the delayed start at once"
    with pytest.raises(RuntimeError, match="cancelled"):
        _ = result.value


def test_future_delay_can_be_shortened_while_waiting() -> None:
    f = Future(lambda: "ran")
    f.delay(30)
    result = f()
    f.delay(0)
    assert result.wait(2) and result.value == "ran"


def test_cancelled_future_cannot_start() -> None:
    f = Future(lambda: None)
    assert f.cancel() is True
    with pytest.raises(RuntimeError, match="cancelled"):
        f()


# ---------------------------------------------------------------- _ExceptionWrapper
def test_exception_wrapper_raises_and_travels() -> None:
    wrapper = _ExceptionWrapper(ValueError("x", 1))
    with pytest.raises(ValueError):
        wrapper.raiseIt()
    assert "ValueError" in repr(wrapper)
    registry = get_registry()
    for name in ("serpent", "json", "msgpack", "marshal", "pickle"):
        ser = registry.serializer(name)(pyroplug.config)
        back = ser.loads(ser.dumps([1, wrapper]))
        assert back[0] == 1 and isinstance(back[1], _ExceptionWrapper), name
        assert isinstance(back[1].exception, ValueError) and back[1].exception.args == ("x", 1), name
